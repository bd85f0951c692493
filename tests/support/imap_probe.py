"""Asks an IMAP server for its METADATA with Python's imaplib, the way spec §7 describes.

Usage: imap_probe.py HOST PORT {plain|tls} USER PASSWORD {login|authenticate} {v2.57|v2.59|single}

Prints one JSON object on stdout:
  login_typ, login_data  tagged reply of LOGIN/AUTHENTICATE (its [CAPABILITY ...] code)
  capabilities           imaplib's capability() after login
  typ, data              tagged reply of GETMETADATA
  entries                {entry: value or null}, parsed from the METADATA untagged data
  raw                    the untagged data as imaplib returned it (repr)
  select                 SELECT INBOX reply and its UIDVALIDITY/UIDNEXT/EXISTS
Exit code 0 even when the server says NO/BAD: the test judges the JSON.
"""

import imaplib
import json
import re
import sys

# Core's exact key lists (spec §2.2 item 7, §2.3).
KEYS_257 = "(/shared/comment /shared/admin /shared/vendor/deltachat/irohrelay /shared/vendor/deltachat/turn /shared/vendor/deltachat/maxsmtprecipients)"
KEYS_259 = "(/shared/comment /shared/admin /shared/vendor/deltachat/irohrelay /shared/vendor/deltachat/turn /shared/vendor/deltachat/maxsmtprecipients /shared/vendor/deltachat/appversions)"

TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|\(|\)|[^\s()"]+')


def tokens(data):
    out = []
    for item in data:
        if isinstance(item, tuple):
            head, literal = item
            head = re.sub(rb"\{\d+\}$", b"", head)
            out += [t for t in TOKEN.findall(head)]
            out.append(("literal", literal))
        elif item is not None:
            out += TOKEN.findall(item)
    return out


def value(tok):
    if isinstance(tok, tuple):
        return tok[1].decode("utf-8")
    if tok.upper() == b"NIL":
        return None
    if tok.startswith(b'"'):
        return tok[1:-1].decode("utf-8")
    return tok.decode("utf-8")


def parse_metadata(data):
    """Entries of possibly several `"" (k v k v)` items."""
    entries = {}
    toks = tokens(data)
    i = 0
    while i < len(toks):
        if toks[i] == b"(":
            i += 1
            while i < len(toks) and toks[i] != b")":
                entries[toks[i].decode()] = value(toks[i + 1])
                i += 2
        i += 1
    return entries


def main():
    host, port, sec, user, password, how, variant = sys.argv[1:8]
    m = imaplib.IMAP4_SSL(host, int(port)) if sec == "tls" else imaplib.IMAP4(host, int(port))
    if how == "login":
        typ, dat = m.login(user, password)
    else:
        typ, dat = m.authenticate("PLAIN", lambda _: b"\0" + user.encode() + b"\0" + password.encode())
    out = {"login_typ": typ, "login_data": [d.decode() for d in dat]}
    if typ != "OK":
        print(json.dumps(out))
        return
    out["capabilities"] = m.capability()[1][-1].decode().split()
    keys = {"v2.57": KEYS_257, "v2.59": KEYS_259, "single": "/shared/vendor/deltachat/irohrelay"}[variant]
    typ, dat = m.xatom("GETMETADATA", '""', keys)
    typ2, vals = m._untagged_response(typ, dat, "METADATA")
    out.update(typ=typ, data=[d.decode() for d in dat if d is not None], raw=repr(vals), entries=parse_metadata(vals))
    typ, dat = m.select("INBOX")
    out["select"] = {
        "typ": typ,
        "exists": dat[0].decode(),
        "uidvalidity": [x.decode() for x in m.untagged_responses.get("UIDVALIDITY", [])],
        "uidnext": [x.decode() for x in m.untagged_responses.get("UIDNEXT", [])],
    }
    m.logout()
    print(json.dumps(out))


main()
