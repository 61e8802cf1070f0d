"""Runs the SCIM compliance checker scim2-tester against a running portcullis.

Usage: check.py <base URL of /scim/v2> <bearer token>. Prints every check and exits 1 when one
failed (ERROR or CRITICAL) or none ran, 0 otherwise.
"""

import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

url, token = sys.argv[1], sys.argv[2]
client = SyncSCIMClient(Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30))
results = check_server(client)
failed = 0
for r in results:
    bad = r.status in (Status.ERROR, Status.CRITICAL)
    failed += bad
    print(f"{r.status.name:<10} {r.resource_type or '-':<6} {r.title}: {r.reason}")
print(f"{len(results)} checks, {failed} failed")
sys.exit(1 if failed or not results else 0)
