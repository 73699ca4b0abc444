# The Python MCP SDK (2.x) as a real client of the gateway.
# usage: py_client.py stdio <bridge.py> <port> | py_client.py http <url> <token>
# Prints one JSON line: {"tools": [...names], "text": <echo result text>, "server": name}.
import json, sys

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client


async def exercise(read, write):
    async with ClientSession(read, write) as session:
        init = await session.initialize()
        tools = await session.list_tools()
        result = await session.call_tool("echo", {"message": "from python"})
        text = "".join(getattr(c, "text", "") for c in result.content)
        print(json.dumps({
            "tools": sorted(t.name for t in tools.tools),
            "text": text,
            "server": init.server_info.name if hasattr(init, "server_info") else init.serverInfo.name,
        }))


async def main():
    mode = sys.argv[1]
    if mode == "stdio":
        params = StdioServerParameters(command=sys.executable, args=[sys.argv[2], sys.argv[3]])
        async with stdio_client(params) as (read, write):
            await exercise(read, write)
    else:
        headers = {"Authorization": f"Bearer {sys.argv[3]}"}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as client:
            async with streamable_http_client(sys.argv[2], http_client=client) as (read, write, *_):
                await exercise(read, write)


anyio.run(main)
