"""owl's MCP server seen by the official Python SDK (`mcp` on PyPI).

    sdk_client.py http URL TOKEN MODE    # MODE: legacy (initialize, 2025-11-25) or 2026-07-28
    sdk_client.py stdio OWL DATA_DIR MODE

Lists the tools and templates, queues a shell task through `task_add`, waits for it, reads
its output through `task_logs` and the `owl://tasks/ID/logs` resource, and asks for a task
that does not exist. Prints one JSON object with what it saw; the Rust test checks it against
the daemon.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def text(result):
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def main():
    kind, target, secret, mode = sys.argv[1:5]
    if kind == "http":
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {secret}"})
        server = streamable_http_client(target, http_client=http)
    else:
        server = StdioServerParameters(command=target, args=["--data-dir", secret, "mcp", "serve"])
    out = {}
    async with Client(server, mode=mode) as client:
        out["protocol_version"] = client.protocol_version
        out["server_name"] = client.server_info.name if client.server_info else None
        tools = await client.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)
        add = next(t for t in tools.tools if t.name == "task_add")
        out["task_add_schema_has_shell"] = "shell" in add.input_schema.get("properties", {})
        templates = await client.list_resource_templates()
        out["templates"] = sorted(t.uri_template for t in templates.resource_templates)

        added = await client.call_tool("task_add", {"shell": "echo hello from mcp", "labels": ["mcp"]})
        assert not added.is_error, text(added)
        task = json.loads(text(added))
        out["task_id"] = task["id"]
        waited = await client.call_tool("task_wait", {"ids": str(task["id"]), "timeout": "20s"})
        assert not waited.is_error, text(waited)
        out["wait"] = json.loads(text(waited))
        logs = await client.call_tool("task_logs", {"id": task["id"], "tail": 1})
        out["logs"] = text(logs)
        resource = await client.read_resource(f"owl://tasks/{task['id']}/logs")
        out["resource"] = "".join(getattr(c, "text", "") for c in resource.contents)

        missing = await client.call_tool("task_show", {"id": 999999})
        out["missing_is_error"] = missing.is_error
        out["missing"] = text(missing)
        bad = await client.call_tool("task_add", {"shell": "true", "timeout": "soon"})
        out["bad_is_error"] = bad.is_error
        out["bad"] = text(bad)
        denied = await client.call_tool("approval_list", {})
        out["approvals_is_error"] = denied.is_error
        out["approvals"] = text(denied)
    print(json.dumps(out))


asyncio.run(main())
