"""`unhindered-collector dashboards push`: upload the dashboards to a Grafana through its
HTTP API with grafana-client and a service account token (docs/dashboards.md).

What it asks Grafana, in order (the legacy /api endpoints, served by Grafana 8 to 12):
GET /api/folders, POST /api/folders when the folder is missing, GET /api/search for the
dashboards' uids, GET /api/dashboards/uid/<uid> for each one that exists, and
POST /api/dashboards/db with overwrite for each new or changed one. An unchanged
dashboard is not uploaded again, so pushing twice adds no version to Grafana's history.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_FOLDER = "Unhindered"
MESSAGE = "unhindered-collector dashboards push"
# What Grafana adds to a dashboard it stores; not ours to compare.
_SERVER_FIELDS = ("id", "version")


class PushError(Exception):
    """A refusal or failure, worded for the operator."""


@dataclass(frozen=True)
class Outcome:
    title: str
    uid: str
    action: str  # created, updated, moved, unchanged
    url: str


def bundled_dashboards_dir() -> Path:
    """The generated JSON: dashboards/ in a source tree, or the installed package's."""
    import dashboards

    return Path(dashboards.__file__).resolve().parent


def load_dashboards(directory: Path) -> list[dict]:
    files = sorted(directory.glob("*.json"))
    if not files:
        raise PushError(f"no dashboard JSON in {directory}")
    loaded = []
    for path in files:
        try:
            dashboard = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise PushError(f"{path}: not a dashboard JSON file ({exc})") from None
        if not isinstance(dashboard, dict) or not dashboard.get("uid"):
            raise PushError(f"{path}: a dashboard needs a uid (regenerate with "
                            "python -m dashboards.generate)")
        loaded.append(dashboard)
    return loaded


def read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise PushError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not token:
        raise PushError(f"the token file {path} is empty: put a Grafana service account "
                        "token in it (Administration > Service accounts, role Editor)")
    return token


def folder_uid_for(title: str) -> str:
    """A stable uid for the folder we create (Grafana allows 40 of [A-Za-z0-9_-])."""
    return re.sub(r"[^a-z0-9_-]+", "-", title.lower()).strip("-")[:40] or "unhindered"


def _api_base(url: str) -> str:
    """grafana-client appends "api" to the URL's path: a sub-path needs its slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PushError(f"--url {url!r} is not an http(s) URL such as "
                        "https://grafana.example.org/")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _comparable(dashboard: dict) -> dict:
    return {k: v for k, v in dashboard.items() if k not in _SERVER_FIELDS}


class _Pusher:
    def __init__(self, url: str, token: str, timeout: float) -> None:
        from grafana_client import GrafanaApi

        self.url = url
        self.api = GrafanaApi.from_url(_api_base(url), credential=token, timeout=timeout)

    def folder(self, title: str) -> tuple[str, str]:
        """(uid, "found" or "created") of the folder titled `title`."""
        uid = folder_uid_for(title)
        for folder in self.api.folder.get_all_folders():
            if folder.get("uid") == uid or folder.get("title") == title:
                return folder["uid"], "found"
        created = self.api.folder.create_folder(title, uid=uid)
        return created["uid"], "created"

    def push(self, dashboards: list[dict], folder_uid: str) -> list[Outcome]:
        uids = [d["uid"] for d in dashboards]
        stored = {hit["uid"] for hit in self.api.search.search_dashboards(
            type_="dash-db", dashboard_uids=uids)}
        outcomes = []
        for dashboard in dashboards:
            action = "created"
            if dashboard["uid"] in stored:
                current = self.api.dashboard.get_dashboard(dashboard["uid"])
                same = _comparable(current["dashboard"]) == _comparable(dashboard)
                here = current.get("meta", {}).get("folderUid") == folder_uid
                action = ("unchanged" if same and here else "updated" if not same
                          else "moved")
            url = ""
            if action != "unchanged":
                answer = self.api.dashboard.update_dashboard({
                    "dashboard": {**dashboard, "id": None}, "folderUid": folder_uid,
                    "overwrite": True, "message": MESSAGE})
                url = answer.get("url", "")
            outcomes.append(Outcome(dashboard.get("title", dashboard["uid"]),
                                    dashboard["uid"], action, url))
        return outcomes


def push(url: str, token: str, folder_title: str, dashboards: list[dict],
         timeout: float = 10.0) -> tuple[str, list[Outcome]]:
    """Uploads `dashboards` into the folder; ("found"/"created", outcomes). PushError with
    what went wrong and what to do."""
    try:
        import grafana_client  # noqa: F401
    except ImportError:
        raise PushError("dashboards push needs grafana-client: pip install "
                        "'unhindered[grafana]' (see docs/dashboards.md)") from None
    from grafana_client.client import (
        GrafanaClientError,
        GrafanaException,
        GrafanaServerError,
        GrafanaTimeoutError,
        GrafanaUnauthorizedError,
    )
    from niquests.exceptions import ConnectionError as NoConnection

    try:
        pusher = _Pusher(url, token, timeout)
        folder_uid, folder_action = pusher.folder(folder_title)
        return folder_action, pusher.push(dashboards, folder_uid)
    except GrafanaUnauthorizedError:
        raise PushError(f"Grafana at {url} refused the token (401 Unauthorized): the token "
                        "is wrong, expired or revoked; create a service account token "
                        "(role Editor) and put it in the token file") from None
    except GrafanaTimeoutError:
        raise PushError(f"Grafana at {url} did not answer within {timeout:g} s") from None
    except GrafanaClientError as exc:
        if exc.status_code == 403:
            raise PushError(f"Grafana at {url} refused (403 Forbidden: {_said(exc)}): the "
                            "token's service account needs the Editor role, or write "
                            "access to the folder") from None
        if exc.status_code == 404:
            raise PushError(f"Grafana at {url} answered 404 Not Found ({_said(exc)}): is "
                            "--url Grafana's base URL, with its sub-path if it is served "
                            "under one (https://host/grafana/)?") from None
        raise PushError(f"Grafana at {url} refused: {exc.message}") from None
    except GrafanaServerError as exc:
        raise PushError(f"Grafana at {url} failed: {exc.message}") from None
    except NoConnection as exc:
        raise PushError(f"cannot connect to Grafana at {url}: {_reason(exc)}; is it "
                        "running, and is the URL right?") from None
    except GrafanaException as exc:  # other transport errors, wrapped by grafana-client
        raise PushError(f"cannot talk to Grafana at {url}: {exc.message}") from None


def _said(exc) -> str:
    response = exc.response
    if isinstance(response, dict) and response.get("message"):
        return str(response["message"])
    return str(response or "no detail")[:200]


def _reason(exc: Exception) -> str:
    text = str(exc)
    return "connection refused" if "refused" in text.lower() else text[:200]


def add_parser(sub: argparse._SubParsersAction) -> None:
    dashboards = sub.add_parser("dashboards", help="Grafana dashboards")
    actions = dashboards.add_subparsers(dest="action", required=True, metavar="ACTION")
    push_parser = actions.add_parser(
        "push", help="upload the dashboards to a Grafana with a service account token")
    push_parser.add_argument("--url", required=True,
                             help="Grafana's base URL, e.g. https://grafana.example.org/")
    push_parser.add_argument("--token-file", type=Path, required=True,
                             help="file holding a Grafana service account token (role Editor)")
    push_parser.add_argument("--folder", default=DEFAULT_FOLDER,
                             help="folder to put them in, created if missing "
                                  "(default: %(default)s)")
    push_parser.add_argument("--dir", type=Path,
                             help="directory of dashboard JSON (default: the generated ones "
                                  "shipped with Unhindered)")
    push_parser.add_argument("--timeout", type=float, default=10.0,
                             help="seconds per request (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        token = read_token(args.token_file)
        dashboards = load_dashboards(args.dir or bundled_dashboards_dir())
        folder_action, outcomes = push(args.url, token, args.folder, dashboards, args.timeout)
    except PushError as exc:
        print(f"unhindered-collector: dashboards push: {exc}", file=sys.stderr)
        return 1
    print(f"folder {args.folder}: {folder_action}")
    for o in outcomes:
        print(f"{o.action:9}  {o.title} ({o.uid}){'  ' + o.url if o.url else ''}")
    changed = sum(o.action != "unchanged" for o in outcomes)
    print(f"{changed} of {len(outcomes)} dashboards changed")
    return 0
