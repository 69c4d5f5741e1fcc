"""A JetStream stream (subjects `NAME.>`) and a durable RabbitMQ queue `NAME` on this
machine's brokers (127.0.0.1:4222, 127.0.0.1:5672 guest/guest): made for the README's
destination example and for bench/destinations.sh, counted, deleted.

    python3 -m pip install -r tools/requirements-brokers.txt
    python3 tools/brokers.py create|count|delete NAME
"""
import asyncio
import sys

import nats
import pika

NATS = "nats://127.0.0.1:4222"
AMQP = pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2f")


async def stream(action, run):
    nc = await nats.connect(NATS)
    js = nc.jetstream()
    try:
        if action == "create":
            await js.add_stream(name=run, subjects=[f"{run}.>"])
        elif action == "count":
            info = await js.stream_info(run)
            print(f"stream {run}: {info.state.messages} messages")
        else:
            await js.delete_stream(run)
    finally:
        await nc.close()


def queue(action, run):
    conn = pika.BlockingConnection(AMQP)
    ch = conn.channel()
    if action == "create":
        ch.queue_declare(run, durable=True)
    elif action == "count":
        q = ch.queue_declare(run, durable=True, passive=True)
        print(f"queue {run}: {q.method.message_count} messages")
    else:
        ch.queue_delete(run)
    conn.close()


if __name__ == "__main__":
    action, run = sys.argv[1], sys.argv[2]
    asyncio.run(stream(action, run))
    queue(action, run)
