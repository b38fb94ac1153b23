"""The asyncio adapter (in progress on this branch)."""
