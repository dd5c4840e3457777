"""The DynamoDB table of the state store, made on moto as the stack makes it."""

from __future__ import annotations

from tests.aws_fixtures import aws_client

TABLE = "kvs-sentinel-state"


async def make_table() -> None:
    async with aws_client("dynamodb") as dynamodb:
        await dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        await dynamodb.update_time_to_live(
            TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
