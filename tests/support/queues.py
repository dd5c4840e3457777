"""SQS queues on moto: made, filled, sent to, and counted as SQS reports them."""

from __future__ import annotations

import json
from typing import Any

from tests.aws_fixtures import aws_client


async def make_queue(name: str, max_receives: int = 3) -> tuple[str, str, str]:
    """(queue URL, its ARN, DLQ URL)."""
    async with aws_client("sqs") as sqs:
        dlq = (await sqs.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
        dlq_arn = (await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))["Attributes"]
        policy = {"deadLetterTargetArn": dlq_arn["QueueArn"], "maxReceiveCount": str(max_receives)}
        url = (await sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": json.dumps(policy)}))[
            "QueueUrl"
        ]
        arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"]
    return url, arn["QueueArn"], dlq


async def send(url: str, *bodies: Any) -> None:
    async with aws_client("sqs") as sqs:
        for body in bodies:
            await sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))


async def queue_counts(url: str) -> tuple[int, int]:
    async with aws_client("sqs") as sqs:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names))["Attributes"]
    return int(attributes[names[0]]), int(attributes[names[1]])


async def drained(url: str) -> bool:
    return await queue_counts(url) == (0, 0)


async def make_filled_queue(name: str, messages: int = 0, redrive: bool = False) -> str:
    async with aws_client("sqs") as sqs:
        attributes = {}
        if redrive:
            dlq = (await sqs.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
            arn = (await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))["Attributes"]
            policy = {"deadLetterTargetArn": arn["QueueArn"], "maxReceiveCount": "5"}
            attributes["RedrivePolicy"] = json.dumps(policy)
        url: str = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
        for start in range(0, messages, 10):
            entries = [
                {"Id": str(i), "MessageBody": json.dumps({"n": i})}
                for i in range(start, min(messages, start + 10))
            ]
            await sqs.send_message_batch(QueueUrl=url, Entries=entries)
    return url
