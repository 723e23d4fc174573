"""Checks HTTP responses against api/openapi.json.

conftest's HTTP helpers pass every response a trainyard server gives the
integration tests to check_response(); a response the document does not
describe exactly is a test failure naming the request, the operation and
what differs.

How a response is matched:
- the operation: the request path (without its query) against the
  document's path templates (a `{param}` is one path segment; the one named
  `path`, an artifact path, may span several), then the method (HEAD reads
  as GET, without a body). A path or method the document lacks is an
  "undocumented" failure when the server answered it with a success; an
  error answer to an unknown route (404, 401, ...) must be the SPEC's error
  body (components/schemas/Error).
- the response: `responses[status]`, else `responses["4XX"]`-style ranges,
  else `default`; none of them is a failure.
- the body: without `content` in the document it must be empty; else the
  Content-Type (parameters aside) must be one of the documented media
  types; a JSON media type's body must parse and validate against its
  schema. Streams (text/plain logs, SSE, archives, artifacts) are checked by
  content type only.

Schemas are OpenAPI 3.0's dialect of JSON Schema; they are converted to
JSON Schema 2020-12 for python3-jsonschema: `nullable: true` admits null,
boolean `exclusiveMinimum`/`exclusiveMaximum` become numbers, `allOf` of
object schemas is merged into one object, and every object schema that
lists `properties` without saying `additionalProperties` is closed
(additionalProperties: false), so that a field the server returns and the
document does not name fails. `format: date-time` must be RFC 3339.

Adding an endpoint: add its path and operation (with response schemas) to
api/openapi.json; nothing here changes.
"""

import copy
import json
import os
import re

import jsonschema

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCUMENT = os.path.join(REPO, "api", "openapi.json")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
GREEDY_PARAMS = ("path",)  # path parameters that may contain '/'
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _is_json_media(media):
    return media == "application/json" or media.endswith("+json")


def _pointer(doc, ref):
    assert ref.startswith("#/"), "only local $refs are supported: %s" % ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


class Document:
    """api/openapi.json, its operations indexed by path template."""

    def __init__(self, path=DOCUMENT):
        with open(path, encoding="utf-8") as f:
            self.doc = json.load(f)
        self.templates = []
        for template, item in self.doc.get("paths", {}).items():
            self.templates.append((template, self._template_regex(template), item))
        # Literal segments win over parameters: the template with the most
        # literal characters is tried first.
        self.templates.sort(key=lambda t: -len(re.sub(r"\{[^}]*\}", "", t[0])))
        self.schemas = {}
        root = {"components": {"schemas": {}}}
        for name, schema in self.doc.get("components", {}).get("schemas", {}).items():
            root["components"]["schemas"][name] = self.convert(schema)
        self.root = root
        checker = jsonschema.FormatChecker()
        checker.checks("date-time")(lambda v: not isinstance(v, str) or bool(RFC3339.match(v)))
        self.format_checker = checker
        self.validators = {}

    @staticmethod
    def _template_regex(template):
        out = ""
        for part in re.split(r"(\{[^}]*\})", template):
            if part.startswith("{") and part.endswith("}"):
                out += "(.+)" if part[1:-1] in GREEDY_PARAMS else "([^/]+)"
            else:
                out += re.escape(part)
        return re.compile("^" + out + "$")

    # -- OpenAPI 3.0 schema -> JSON Schema 2020-12 --------------------------
    def convert(self, schema):
        if not isinstance(schema, dict):
            return schema
        if "$ref" in schema:
            return {"$ref": schema["$ref"]}
        s = {}
        for key, value in schema.items():
            if key in ("properties", "patternProperties", "$defs"):
                s[key] = {k: self.convert(v) for k, v in value.items()}
            elif key in ("items", "additionalProperties", "not", "propertyNames", "contains"):
                s[key] = self.convert(value) if isinstance(value, dict) else value
            elif key in ("allOf", "anyOf", "oneOf", "prefixItems"):
                s[key] = [self.convert(v) for v in value]
            elif key in ("nullable", "example", "discriminator", "xml", "externalDocs",
                         "readOnly", "writeOnly", "deprecated"):
                continue
            else:
                s[key] = copy.deepcopy(value)
        for bound in ("Minimum", "Maximum"):
            flag = s.get("exclusive" + bound)
            if isinstance(flag, bool):
                del s["exclusive" + bound]
                if flag:
                    s["exclusive" + bound] = s.pop(bound.lower())
        if "allOf" in s and all(self._is_object(m) for m in s["allOf"]):
            s = self._merge_all_of(s)
        if "properties" in s and "additionalProperties" not in s:
            s["additionalProperties"] = False
        if schema.get("nullable") is True:
            s = {"anyOf": [{"type": "null"}, s]}
        return s

    def _resolve_source(self, schema):
        while "$ref" in schema:
            schema = _pointer(self.doc, schema["$ref"])
        return schema

    def _is_object(self, member):
        m = member
        if "$ref" in m:
            m = self._resolve_source(m)
        return m.get("type") == "object" or "allOf" in m

    def _merge_all_of(self, s):
        merged = {k: v for k, v in s.items() if k != "allOf"}
        merged["type"] = "object"
        props, required = dict(merged.get("properties", {})), list(merged.get("required", []))
        for member in s["allOf"]:
            if "$ref" in member:
                member = self.convert(self._resolve_source(member))
            assert "anyOf" not in member, "allOf of a nullable member is not merged"
            props.update(member.get("properties", {}))
            required += [r for r in member.get("required", []) if r not in required]
        merged["properties"] = props
        if required:
            merged["required"] = required
        return merged

    # -- matching -----------------------------------------------------------
    def operation(self, method, path):
        """(template, operation) or (template, None) or (None, None)."""
        for template, regex, item in self.templates:
            if regex.match(path):
                op = item.get(method.lower())
                if op is None and method.upper() == "HEAD":
                    op = item.get("get")
                return template, op
        return None, None

    def _deref(self, obj):
        while isinstance(obj, dict) and "$ref" in obj:
            obj = _pointer(self.doc, obj["$ref"])
        return obj

    def response(self, op, status):
        responses = op.get("responses", {})
        for key in (str(status), "%dXX" % (status // 100), "default"):
            if key in responses:
                return key, self._deref(responses[key])
        return None, None

    def validate(self, schema, instance):
        """Error texts (empty when instance is valid)."""
        v = self.validators.get(id(schema))
        if v is None:
            full = dict(self.convert(schema))
            full["components"] = self.root["components"]
            jsonschema.Draft202012Validator.check_schema(full)
            v = jsonschema.Draft202012Validator(full, format_checker=self.format_checker)
            self.validators[id(schema)] = v
        errors = []
        for e in sorted(v.iter_errors(instance), key=lambda e: list(e.absolute_path)):
            where = "".join("[%r]" % p for p in e.absolute_path) or "(the body)"
            errors.append("%s: %s" % (where, e.message[:400]))
        return errors


_DOC = None
SEEN = set()  # (METHOD, template, response key) of every response checked


def document():
    global _DOC
    if _DOC is None:
        _DOC = Document()
    return _DOC


def check_response(method, target, status, headers, data, record=False):
    """Problems with one response (a list of strings, empty when it matches).
    target: the request target (path and query); headers: lower-case names;
    data: the body bytes as received (already de-chunked); record: count it
    in SEEN (what the tests exercised)."""
    doc = document()
    path = target.split("?", 1)[0]
    template, op = doc.operation(method, path)
    ctype = headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if op is None:
        what = "path" if template is None else "method %s on %s" % (method, template)
        if status < 400:
            return ["undocumented %s: the server answered %d but api/openapi.json has no "
                    "operation for it (add it under paths)" % (what, status)]
        # An error answer to a route that does not exist: still the SPEC's error body.
        return _check_json(doc, {"$ref": "#/components/schemas/Error"}, media, data,
                           "an error answer to an undocumented %s" % what)
    key, resp = doc.response(op, status)
    if resp is None:
        return ["status %d is not documented for %s %s (responses: %s)" % (
            status, method, template, ", ".join(sorted(op.get("responses", {}))))]
    if record:
        SEEN.add((method.upper(), template, key))
    where = "%s %s response %s" % (method, template, key)
    content = resp.get("content")
    if method.upper() == "HEAD":
        return []
    if not content:
        if data:
            return ["%s documents no body, got %d bytes (%s)" % (where, len(data),
                                                                  ctype or "no Content-Type")]
        return []
    if media not in content:
        wild = [m for m in content if m.endswith("/*") and media.startswith(m[:-1])]
        if "*/*" not in content and not wild:
            return ["%s: Content-Type %r is not one of the documented %s" % (
                where, ctype, ", ".join(sorted(content)))]
        return []
    if not _is_json_media(media):
        return []
    schema = content[media].get("schema")
    if schema is None:
        return ["%s: %s without a schema" % (where, media)]
    return _check_json(doc, schema, media, data, where)


def unexercised():
    """Documented operations no checked response came from, and the count
    of (operation, response) pairs seen."""
    doc = document()
    ops = {(m.upper(), t) for t, item in doc.doc["paths"].items() for m in item
           if m in METHODS}
    return sorted(ops - {(m, t) for m, t, _ in SEEN}), len(SEEN)


def _check_json(doc, schema, media, data, where):
    if not _is_json_media(media):
        return ["%s: Content-Type %r, expected application/json" % (where, media or None)]
    try:
        instance = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        return ["%s: body is not JSON (%s): %r" % (where, e, data[:200])]
    errors = doc.validate(schema, instance)
    return ["%s: %s" % (where, e) for e in errors]
