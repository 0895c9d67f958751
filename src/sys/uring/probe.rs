//! The start-up probe behind `IO_BACKEND=auto` and `herald doctor`.

use io_uring::{opcode, Probe};

use super::bufs::BufRing;
use super::{builder, Setup, BGID};

/// Checks that this kernel and process can run the io_uring driver: a ring
/// can be created (not disabled by `kernel.io_uring_disabled`, within
/// `RLIMIT_MEMLOCK`), it has every opcode the driver uses, and it takes a
/// provided-buffer ring. `Err` says why not, in one line.
pub fn probe() -> Result<(), String> {
    let ring = builder(Setup::CoopSingleIssuer)
        .build(8)
        .map_err(|e| format!("cannot create a ring: {e}"))?;
    let mut p = Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|e| format!("cannot probe opcodes: {e}"))?;
    let needed = [
        ("accept", opcode::AcceptMulti::CODE),
        ("recv", opcode::RecvMulti::CODE),
        ("sendmsg", opcode::SendMsg::CODE),
        ("poll_add", opcode::PollAdd::CODE),
        ("async_cancel", opcode::AsyncCancel2::CODE),
        ("close", opcode::Close::CODE),
    ];
    if let Some((name, _)) = needed.iter().find(|(_, code)| !p.is_supported(*code)) {
        return Err(format!("the kernel lacks the {name} opcode"));
    }
    if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
        return Err("the kernel lacks IORING_FEAT_EXT_ARG or NODROP (Linux >= 5.11)".into());
    }
    let mut bufs = BufRing::new(&ring, 1).map_err(|e| {
        format!("no provided-buffer rings (multishot receive needs Linux >= 6.0): {e}")
    })?;
    if ring.submitter().unregister_buf_ring(BGID).is_err() {
        bufs.leak();
    }
    Ok(())
}
