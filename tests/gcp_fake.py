"""A local stand-in for the Compute Engine v1 firewalls and global operations endpoints.

Request bodies are validated against the Firewall schema of the Compute v1 discovery document
that google-api-python-client ships, turned into JSON Schema with ``additionalProperties:
false`` and the output-only fields left out, so a misspelled, misplaced or read-only field is
a 400 here and an entry in ``invalid``. Every request is recorded in ``requests``.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import googleapiclient
import jsonschema

DISCOVERY = Path(googleapiclient.__file__).parent / "discovery_cache/documents/compute.v1.json"
API_URL = "https://www.googleapis.com/compute/v1/"
ROUTE = re.compile(r"^/compute/v1/projects/(?P<project>[^/]+)/global/"
                   r"(?P<collection>firewalls|operations)(?:/(?P<name>[^/]+))?(?P<wait>/wait)?$")


@cache
def _discovery():
    return json.loads(DISCOVERY.read_text())


def _output_only(prop):
    text = prop.get("description", "")
    return prop.get("readOnly") or text.startswith(("[Output Only]", "Output only."))


@cache
def request_schema(method_id):
    """JSON Schema of the Firewall request body of a discovery method (e.g. compute.firewalls.patch)."""
    schemas = _discovery()["schemas"]
    defs = {}

    def convert(node):
        if "$ref" in node:
            ref = node["$ref"]
            if ref not in defs:
                defs[ref] = {}
                defs[ref] = convert(schemas[ref])
            return {"$ref": f"#/$defs/{ref}"}
        kind = node.get("type")
        if kind == "object":
            out = {"type": "object"}
            props = {k: v for k, v in node.get("properties", {}).items() if not _output_only(v)}
            if "additionalProperties" in node:
                out["additionalProperties"] = convert(node["additionalProperties"])
            else:
                out["additionalProperties"] = False
            out["properties"] = {k: convert(v) for k, v in props.items()}
            required = [k for k, v in props.items()
                        if method_id in v.get("annotations", {}).get("required", [])]
            if required:
                out["required"] = required
            return out
        if kind == "array":
            return {"type": "array", "items": convert(node["items"])}
        if kind == "integer":
            out = {"type": "integer"}
            if node.get("format") == "int32":
                out.update(minimum=-(2**31), maximum=2**31 - 1)
            return out
        if kind == "string":
            out = {"type": "string"}
            if "enum" in node:
                out["enum"] = node["enum"]
            if "pattern" in node:
                out["pattern"] = f"^(?:{node['pattern']})$"
            return out
        if kind in ("boolean", "number"):
            return {"type": kind}
        return {}

    root = convert({"$ref": "Firewall"})
    return {**root, "$defs": defs}


def validate(body, method_id):
    """The schema errors of a request body, as strings (empty when valid)."""
    validator = jsonschema.Draft202012Validator(request_schema(method_id))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
            for e in validator.iter_errors(body)]


class FakeCompute:
    """Compute v1 firewalls + globalOperations for the projects and networks it knows."""

    def __init__(self, token, networks=(("proj-a", "mesh-net"),)):
        self.token = token
        self.networks = set(networks)
        self.rules = {}          # (project, name) -> the stored rule, as GET returns it
        self.operations = {}     # name -> operation (plus "_apply" until DONE)
        self.by_request_id = {}
        self.requests = []       # {method, path, query, body, status, operation_status}
        self.invalid = []        # what a real server would have rejected as malformed
        self.faults = []         # [method, path substring, status, times left]
        self.forbidden = set()   # projects answering 403
        self.operation_error = None
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    # -- test controls ---------------------------------------------------------------------------
    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self._server.server_address[1]}/compute/v1/"

    def start(self):
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def fail(self, method, path, status, times=1):
        """Answer the next ``times`` requests of ``method`` whose path contains ``path`` so."""
        self.faults.append([method, path, status, times])

    def fail_next_operation(self, code, message):
        self.operation_error = {"errors": [{"code": code, "message": message}]}

    def seed(self, project, rule):
        self.rules[(project, rule["name"])] = self._stored(project, rule)

    @property
    def writes(self):
        return [r for r in self.requests if r["method"] in ("POST", "PATCH", "DELETE")
                and "/operations/" not in r["path"]]

    # -- the API ---------------------------------------------------------------------------------
    def _stored(self, project, body):
        rule = {"kind": "compute#firewall", "id": str(next(self._ids)),
                "creationTimestamp": "2026-11-25T10:00:00.000-08:00", "direction": "INGRESS",
                "priority": 1000, "disabled": False, "logConfig": {"enable": False}, **body}
        network = rule.get("network", "global/networks/default")
        rule["network"] = API_URL + _network_path(project, network)
        rule["selfLink"] = f"{API_URL}projects/{project}/global/firewalls/{rule['name']}"
        return rule

    def handle(self, method, path, query, body, headers):
        """(status, answer) of one request."""
        if path == "/token" and method == "POST":
            return self._token(body)
        match = ROUTE.match(path)
        if not match:
            return self._error(404, f"no such route: {method} {path}", invalid=True)
        project, collection, name = match["project"], match["collection"], match["name"]
        if match["wait"] and collection != "operations":
            return self._error(404, f"no such route: {method} {path}", invalid=True)
        if headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(401, "Request had invalid authentication credentials.")
        for fault in self.faults:
            if fault[0] == method and fault[1] in path and fault[3] > 0:
                fault[3] -= 1
                return self._error(fault[2], f"injected {fault[2]}")
        if project in self.forbidden:
            verb = {"GET": "get", "POST": "create", "PATCH": "update", "DELETE": "delete"}[method]
            return self._error(403, f"Required 'compute.{collection}.{verb}' permission for "
                                    f"'projects/{project}/global/{collection}/{name or ''}'")
        writes = {"POST": "compute.firewalls.insert", "PATCH": "compute.firewalls.patch"}
        if collection == "operations":
            if method == "GET" or (method == "POST" and match["wait"]):
                return self._step(project, name)
            return self._error(405, f"{method} not allowed on {path}", invalid=True)
        if method in ("POST", "PATCH", "DELETE"):
            request_id = query.pop("requestId", [None])[0]
            if not _is_uuid(request_id):
                return self._error(400, f"requestId {request_id!r} is not a non-zero UUID",
                                   invalid=True)
            if request_id in self.by_request_id:
                return 200, self.operations[self.by_request_id[request_id]]
        if query:
            return self._error(400, f"unexpected query parameters {sorted(query)}", invalid=True)
        if method in writes:
            problems = validate(body, writes[method])
            if problems:
                return self._error(400, "; ".join(problems), invalid=True)
        key = (project, name or (body or {}).get("name"))
        if method == "GET" and name:
            if key not in self.rules:
                return self._not_found(project, "firewalls", name)
            return 200, self.rules[key]
        if method == "POST" and not name:
            if key in self.rules:
                return self._error(409, f"The resource 'projects/{project}/global/firewalls/"
                                        f"{key[1]}' already exists")
            network = _network_path(project, body.get("network", "global/networks/default"))
            net_project, net_name = network.split("/")[1], network.split("/")[-1]
            if (net_project, net_name) not in self.networks:
                return self._not_found(net_project, "networks", net_name)
            return self._operation(project, "insert", key, lambda: self._insert(project, body))
        if method in ("PATCH", "DELETE") and name:
            if key not in self.rules:
                return self._not_found(project, "firewalls", name)
            if method == "PATCH":
                if body["name"] != name:
                    return self._error(400, "name in the body differs from the URL's")
                return self._operation(project, "patch", key, lambda: _merge(self.rules[key], body))
            return self._operation(project, "delete", key, lambda: self.rules.pop(key))
        return self._error(405, f"{method} not allowed on {path}", invalid=True)

    def _token(self, form):
        """OAuth2 JWT-bearer grant of a service-account key whose token_uri points here."""
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or \
                not form.get("assertion"):
            return self._error(400, f"unexpected token request {sorted(form)}", invalid=True)
        return 200, {"access_token": self.token, "expires_in": 3600, "token_type": "Bearer"}

    def _insert(self, project, body):
        self.rules[(project, body["name"])] = self._stored(project, body)

    def _operation(self, project, kind, key, apply):
        name = f"operation-{next(self._ids)}-{uuid.uuid4().hex[:12]}"
        op = {"kind": "compute#operation", "id": str(next(self._ids)), "name": name,
              "operationType": kind, "status": "PENDING", "progress": 0,
              "targetLink": f"{API_URL}projects/{project}/global/firewalls/{key[1]}",
              "selfLink": f"{API_URL}projects/{project}/global/operations/{name}",
              "_apply": apply}
        self.operations[name] = op
        request_id = self.requests[-1]["query"].get("requestId", [None])[0]
        self.by_request_id[request_id] = name
        return 200, op

    def _step(self, project, name):
        """Each get or wait moves the operation one step: PENDING -> RUNNING -> DONE."""
        op = self.operations.get(name)
        if op is None:
            return self._not_found(project, "operations", name)
        if op["status"] == "PENDING":
            op.update(status="RUNNING", progress=50)
        elif op["status"] == "RUNNING":
            op.update(status="DONE", progress=100)
            apply = op.pop("_apply")
            if self.operation_error:
                op.update(error=self.operation_error, httpErrorStatusCode=400,
                          httpErrorMessage="BAD REQUEST")
                self.operation_error = None
            else:
                apply()
        return 200, op

    def _not_found(self, project, collection, name):
        return self._error(404, f"The resource 'projects/{project}/global/{collection}/{name}' "
                                "was not found")

    def _error(self, status, message, invalid=False):
        if invalid:
            self.invalid.append(message)
        reason = {400: "invalid", 401: "authError", 403: "forbidden", 404: "notFound",
                  409: "alreadyExists", 429: "rateLimitExceeded"}.get(status, "backendError")
        return status, {"error": {"code": status, "message": message,
                                  "errors": [{"message": message, "domain": "global",
                                              "reason": reason}]}}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.headers.get("Content-Type", "").startswith("application/x-www-form"):
                    body = parse_qs(raw.decode())
                else:
                    body = json.loads(raw) if raw else None
                query = parse_qs(url.query)
                with fake._lock:
                    record = {"method": self.command, "path": url.path, "query": dict(query),
                              "body": body}
                    fake.requests.append(record)
                    status, answer = fake.handle(self.command, url.path, query, body,
                                                 self.headers)
                    record["status"] = status
                    record["operation_status"] = answer.get("status")
                    data = json.dumps({k: v for k, v in answer.items()
                                       if not k.startswith("_")}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, *args):
                pass

        return Handler


def _network_path(project, network):
    if network.startswith(API_URL):
        return network[len(API_URL):]
    if network.startswith("global/"):
        return f"projects/{project}/{network}"
    return network


def _is_uuid(text):
    try:
        return uuid.UUID(text).int != 0
    except (TypeError, ValueError):
        return False


def _merge(target, patch):
    """JSON merge patch (RFC 7396), as firewalls.patch applies it."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
