"""Agent and workflow telemetry (the seed ElfAutomations system, CONTRACTS.md 1.5): communication
records between teams, MCP servers and workflows, the seed's views over them, the unified registry
and the n8n webhook. Communications are canonical events (``event_type = "communication"``); the
registry is small mutable state kept as storage documents and records."""
