#!/usr/bin/env python3
"""Produces records for herald's Kafka tests with librdkafka (confluent-kafka),
a client independent of the one herald uses.

Usage: kafka_produce.py BROKER [SASL-MECHANISM USER PASSWORD] < records.jsonl
Each input line: {"topic": T, "partition": P (optional), "value": "..." or null}.
Prints one JSON line per record, in input order: {"topic", "partition", "offset"}.
Exits 1 naming the first record that failed.
"""
import json
import sys

from confluent_kafka import Producer


def main() -> int:
    broker = sys.argv[1]
    conf = {"bootstrap.servers": broker, "linger.ms": 0, "acks": "all",
            "enable.idempotence": False, "message.timeout.ms": 20000}
    if len(sys.argv) == 5:
        conf.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": sys.argv[2],
                     "sasl.username": sys.argv[3], "sasl.password": sys.argv[4]})
    p = Producer(conf)
    done = []
    failed = []

    def report(err, msg, i):
        if err is not None:
            failed.append(f"record {i}: {err}")
        else:
            done.append((i, msg.topic(), msg.partition(), msg.offset()))

    for i, line in enumerate(sys.stdin):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        value = r.get("value")
        kwargs = {"value": None if value is None else value.encode()}
        if r.get("partition") is not None:
            kwargs["partition"] = r["partition"]
        p.produce(r["topic"], on_delivery=lambda err, msg, i=i: report(err, msg, i), **kwargs)
        # Keep order per partition: one in flight at a time is plenty here.
        p.flush(20)
    p.flush(20)
    if failed:
        print(failed[0], file=sys.stderr)
        return 1
    for _, topic, partition, offset in sorted(done):
        print(json.dumps({"topic": topic, "partition": partition, "offset": offset}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
