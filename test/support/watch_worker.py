"""A third-party pika worker for the watch test: how it answers depends on the request's id prefix.

ok-*: at once; late-*: after LATE_SECONDS; wrong-*: at once, on a wrong routing key; none-*: never;
twice-*: at once, then again as worker py-2 (a request two servers took).
Seed requests carry id and reply_to in the body; MQTT 5 ones carry header x-reply-to-topic and correlation_id.
"""
import json
import sys

import pika

amqp_url, queue, late_seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
parameters = pika.URLParameters(amqp_url)
# The name the broker lists the connection by (management API): a watch's verdict names the worker by it.
parameters.client_properties = {"connection_name": f"watch-worker {queue}"}
connection = pika.BlockingConnection(parameters)
channel = connection.channel()
channel.queue_declare(queue=queue, durable=False, auto_delete=True)
channel.queue_bind(queue=queue, exchange="amq.direct", routing_key=queue)


def on_request(ch, method, properties, body):
    headers = properties.headers or {}
    correlation = properties.correlation_id
    if "x-reply-to-topic" in headers:
        key = headers["x-reply-to-topic"]
        if isinstance(key, bytes):
            key = key.decode()
        request_id = correlation
    else:
        request = json.loads(body)
        key = request["reply_to"].replace("/", ".")
        request_id = request["id"]
    ch.basic_ack(delivery_tag=method.delivery_tag)
    reply = json.dumps({"id": request_id, "result": "ok", "worker": "py-1"}).encode()
    props = pika.BasicProperties(correlation_id=correlation) if correlation else None

    def send(routing_key, body=reply):
        ch.basic_publish(exchange="amq.direct", routing_key=routing_key, body=body, properties=props)
        print("answered", request_id, "on", routing_key, flush=True)

    if request_id.startswith("ok-"):
        send(key)
    elif request_id.startswith("late-"):
        connection.call_later(late_seconds, lambda: send(key))
    elif request_id.startswith("twice-"):
        send(key)
        send(key, json.dumps({"id": request_id, "result": "ok", "worker": "py-2"}).encode())
    elif request_id.startswith("wrong-"):
        send("wrong." + key)
    else:
        print("ignored", request_id, flush=True)


channel.basic_consume(queue=queue, on_message_callback=on_request)
print("ready", flush=True)
channel.start_consuming()
