#!/bin/sh
# owl's MCP client under the official conformance suite's client mode: the suite starts a
# server for a scenario and runs this with the server's URL as the last argument. $OWL is
# the owl binary under test.
url="$1"
case "$MCP_CONFORMANCE_SCENARIO" in
  initialize) exec "$OWL" mcp tools --url "$url" ;;
  tools_call) exec "$OWL" mcp call --url "$url" add_numbers '{"a": 2, "b": 3}' ;;
  *) echo "conformance_client.sh: no steps for scenario $MCP_CONFORMANCE_SCENARIO" >&2; exit 2 ;;
esac
