"""The Sanctum Python SDK: the REST API as Python calls, for notebooks, scripts and the CLI.

In a notebook::

    from getpass import getpass
    from sanctum.sdk import Client

    client, login = Client.login("https://tre.example.org", "ada@example.org", getpass(), totp="123456")
    [p.name for p in client.list_projects()]          # ['cardio-2024']
    client.add_member("cardio-2024", "bob@example.org", role="data_scientist")
    page = client.project_audit("cardio-2024", limit=20)
    page.events[-1].action                              # 'member.add'

Or reuse what ``sanctum login`` stored (or ``SANCTUM_URL`` / ``SANCTUM_TOKEN``)::

    with Client.from_config() as client:
        client.me().email

Results are the wire schemas the server itself uses (``sanctum.schemas``, Pydantic models). A
refusal raises ``SanctumAPIError`` with ``status``, ``code`` and ``message``; an unreachable server
raises ``SanctumConnectionError``; missing credentials ``SanctumConfigError``.
"""

from sanctum.sdk.client import Client
from sanctum.sdk.errors import SanctumAPIError, SanctumConfigError, SanctumConnectionError, SanctumSDKError

__all__ = ["Client", "SanctumAPIError", "SanctumConfigError", "SanctumConnectionError", "SanctumSDKError"]
