"""The gateway: an asyncio gRPC server that validates requests, owns job records and streams events."""
