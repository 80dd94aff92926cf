"""The decision modes that turn signals into order requests for the authority: follow the signal, a strategy per
symbol, or an agent (a model over the MCP tools). They ask the authority over the bus; none decides admission."""
