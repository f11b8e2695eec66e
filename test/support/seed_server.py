"""An independent AMQP server in Python (pika), following the seed's reply rule: reply_to with / turned into ."""
import json
import sys

import pika

amqp_url, queue = sys.argv[1], sys.argv[2]
connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
channel = connection.channel()
channel.queue_declare(queue=queue, durable=True)
channel.queue_bind(queue=queue, exchange="amq.direct", routing_key=queue)


def on_request(ch, method, properties, body):
    request = json.loads(body)
    reply_to = request["reply_to"]
    ch.basic_publish(exchange="amq.direct", routing_key=reply_to.replace("/", "."), body="done".encode())
    ch.basic_ack(delivery_tag=method.delivery_tag)
    print("answered", reply_to, flush=True)


channel.basic_consume(queue=queue, on_message_callback=on_request)
print("ready", flush=True)
channel.start_consuming()
