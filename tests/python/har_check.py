#!/usr/bin/env python3
"""Checks a HAR file against the required fields and types of the HAR 1.2 spec
(http://www.softwareishard.com/blog/har-12-spec/). Prints "ok: N entries" or the first problem (exit 1).

Usage: python har_check.py FILE.har
"""
import json
import sys
from datetime import datetime


def fail(msg: str) -> None:
    print(f"har_check: {msg}")
    sys.exit(1)


def need(obj, key, types, where):
    if not isinstance(obj, dict) or key not in obj:
        fail(f"{where}: missing {key!r}")
    v = obj[key]
    if not isinstance(v, types) or isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        fail(f"{where}.{key}: expected {types}, got {type(v).__name__}")
    return v


def pairs(lst, where):
    for i, p in enumerate(lst):
        need(p, "name", str, f"{where}[{i}]")
        need(p, "value", str, f"{where}[{i}]")


def main(path: str) -> None:
    doc = json.load(open(path))
    log = need(doc, "log", dict, "")
    if need(log, "version", str, "log") != "1.2":
        fail("log.version is not 1.2")
    creator = need(log, "creator", dict, "log")
    need(creator, "name", str, "log.creator")
    need(creator, "version", str, "log.creator")
    entries = need(log, "entries", list, "log")
    num = (int, float)
    for i, e in enumerate(entries):
        w = f"entries[{i}]"
        started = need(e, "startedDateTime", str, w)
        datetime.fromisoformat(started.replace("Z", "+00:00"))
        total = need(e, "time", num, w)
        need(e, "cache", dict, w)
        t = need(e, "timings", dict, w)
        for k in ("send", "wait", "receive"):
            if need(t, k, num, f"{w}.timings") < 0:
                fail(f"{w}.timings.{k} must be >= 0")
        spent = sum(v for k, v in t.items() if k != "ssl" and isinstance(v, num) and v >= 0)
        if abs(spent - total) > 0.01:
            fail(f"{w}.time {total} is not the sum of its timings {spent}")
        rq = need(e, "request", dict, w)
        for k, ty in (("method", str), ("url", str), ("httpVersion", str), ("cookies", list), ("headers", list),
                      ("queryString", list), ("headersSize", int), ("bodySize", int)):
            need(rq, k, ty, f"{w}.request")
        if not rq["url"].startswith(("http://", "https://")):
            fail(f"{w}.request.url is not absolute: {rq['url']}")
        pairs(rq["headers"], f"{w}.request.headers")
        pairs(rq["queryString"], f"{w}.request.queryString")
        if "postData" in rq:
            pd = need(rq, "postData", dict, f"{w}.request")
            need(pd, "mimeType", str, f"{w}.request.postData")
            if "text" not in pd and "params" not in pd:
                fail(f"{w}.request.postData: needs text or params")
        rs = need(e, "response", dict, w)
        for k, ty in (("status", int), ("statusText", str), ("httpVersion", str), ("cookies", list),
                      ("headers", list), ("content", dict), ("redirectURL", str), ("headersSize", int),
                      ("bodySize", int)):
            need(rs, k, ty, f"{w}.response")
        pairs(rs["headers"], f"{w}.response.headers")
        c = rs["content"]
        need(c, "size", int, f"{w}.response.content")
        need(c, "mimeType", str, f"{w}.response.content")
        if "text" in c and len(c["text"].encode()) != c["size"]:
            fail(f"{w}.response.content.size {c['size']} != length of text")
    print(f"ok: {len(entries)} entries")


if __name__ == "__main__":
    main(sys.argv[1])
