"""vcfilter: create, show, update and delete a user's vfilter rules.

    vcfilter -i -t myfilter -h 2 -c 0 -k "failure notice" -f /NoDeliver \\
             -b "2|/usr/local/bin/myfilter" testuser01@example.com

Adding a rule for a user creates ``Maildir/vfilter`` (vfilter then reads the
user's rules); deleting the last one removes it.  ``prefilt@domain`` and
``postfilt@domain`` hold the domain's global rules."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from indimail.vdomain import vfilter as V
from indimail.vdomain.admin import AdminError, run_cli, split_address
from indimail.vdomain.records import VFilter

USAGE = """usage: vcfilter [--home dir] [options] emailid
options: -v verbose
         -r raw display (for -s option)
         -s show filter(s)
         -i add filter
         -d filter_no delete filter(s)
         -u filter_no update filter
         -t Filter Name (textual description of filter)
         -h header value (see headerlist)
         -c comparision
         -k keyword ["" string if comparision (-c option) is 5 or 6]
         -f folder [Specify /NoDeliver for delivery to be junked]
         -b bounce action
              0               - Do not Bounce to sender
              1               - Bounce to sender
              2'&user@domain' - Forward to another id
              2'|program'     - Feed mail to another program
              3'&user@domain' - Forward to another id and Bounce
              3'|program'     - Feed mail to another program and Bounce"""


def _number(text: str) -> int:
    return int(text) if text.isdigit() else -1


def parse(opts, names) -> dict:
    """vcfilter's options checked as upstream get_options() does."""
    o = {"action": None, "filter_no": -1, "header": -1, "comparison": -1, "bounce": -1,
         "forward": "", "name": None, "keyword": None, "folder": "", "raw": False}
    for key, value in opts:
        if key == "-s":
            o["action"] = "show"
        elif key == "-r":
            o["raw"] = True
        elif key == "-i":
            o["action"] = "insert"
        elif key in ("-d", "-u"):
            o["action"] = "delete" if key == "-d" else "update"
            o["filter_no"] = _number(value)
        elif key == "-h":
            o["header"] = _number(value)
            if value.isdigit() and o["header"] >= len(names):
                raise AdminError(f"header value {value} out of range")
        elif key == "-c":
            o["comparison"] = _number(value)
            if value.isdigit() and o["comparison"] >= len(V.COMPARISONS):
                raise AdminError(f"comparision value {value} out of range")
        elif key == "-b":
            if not value[:1].isdigit():
                continue
            o["bounce"] = int(value[0])
            if o["bounce"] not in (0, 1, 2, 3):
                raise AdminError(f"invalid bounce action {o['bounce']}")
            if o["bounce"] in (2, 3):
                if len(value) < 3 or value[1] not in "&|":
                    raise AdminError("forwarding address incorrect or not specified")
                o["forward"] = value[1:]
        elif key == "-t":
            o["name"] = value
        elif key == "-k":
            o["keyword"] = value
        elif key == "-f":
            if value.startswith("."):
                raise AdminError(f"{value}: Folder Name cannot start with [.]")
            if value.lower() != V.NO_DELIVER.lower() and "/" in value:
                raise AdminError(f"{value}: Invalid Char [/]")
            o["folder"] = value
    if o["action"] is None:
        raise AdminError("Must specify one of -s -i, -u, -d option")
    if o["comparison"] in (5, 6):
        o["header"], o["keyword"] = -1, ""
    if o["action"] in ("insert", "update"):
        if o["action"] == "insert" and not o["name"]:
            raise AdminError("filter name not specified")
        missing = [f"{opt} option not specified" for opt, bad in
                   (("-c", o["comparison"] == -1), ("-b", o["bounce"] == -1),
                    ("-f", not o["folder"])) if bad]
        if o["comparison"] not in (5, 6):
            missing += [f"{opt} option not specified" for opt, bad in
                        (("-h", o["header"] == -1), ("-k", not o["keyword"])) if bad]
        if missing:
            raise AdminError("\n".join(missing))
        if o["comparison"] == 7:
            o["keyword"] = "".join(o["keyword"].split())
    for what, value, width in (("filter name", o["name"] or "", 32),
                               ("keyword", o["keyword"] or "", 64),
                               ("bounce action", f"{o['bounce']}{o['forward']}", 64),
                               ("folder", o["folder"], 156)):
        if len(value) > width:     # the vfilter table's column widths
            raise AdminError(f"{what} longer than {width} characters")
    if o["action"] in ("update", "delete") and o["filter_no"] == -1:
        raise AdminError("filter no not specified or invalid")
    return o


async def _body(admin, opts, args):
    if not args:
        raise AdminError("must supply emailid")
    emailid = args[0].strip().lower()
    names = await admin._thread(V.header_list, Path(admin.home.control) / "headerlist")
    o = parse(opts, names)
    local, domain = split_address(emailid)
    if not local.startswith(("prefilt", "postfilt")) and local.startswith(V.RFC_IDS):
        raise AdminError(f"email {emailid} not allowed for filtering")
    real = await admin.store.real_domain(domain)
    if real is None:
        raise AdminError(f"{domain}: domain does not exist")
    emailid = f"{local}@{real}"
    store = admin.store
    if o["action"] == "show":
        rules = await store.filters(emailid)
        if not rules:
            return 1
        if o["raw"]:
            sys.stdout.write("".join(V.format_rule_raw(r) for r in rules))
        else:
            sys.stdout.write(V.DISPLAY_HEAD + "".join(V.format_rule(r, names) + V.DISPLAY_RULE
                                                      for r in rules))
        return 0
    user = await store.get_user(local, real)
    if user is None and o["action"] in ("insert", "delete"):
        raise AdminError(f"{local}@{real}: No such user")
    flag = Path(user.pw_dir) / "Maildir" / "vfilter" if user else None
    global_id = local.startswith(("prefilt", "postfilt"))
    bounce = f"{o['bounce']}{o['forward']}"
    if o["action"] == "insert":
        number = o["comparison"] - 5 if o["comparison"] in (5, 6) else \
            await store.next_filter_no(emailid)
        rule = VFilter(emailid, number, o["name"], o["header"], o["comparison"],
                       o["keyword"] or "", o["folder"], bounce, 0)
        await store.add_filter(rule)
        if "-v" in dict(opts):
            sys.stdout.write(f"added filter No {number} for {emailid}\n")
        if not global_id:
            await admin._thread(_touch, flag)
    elif o["action"] == "update":
        current = {r.filter_no: r for r in await store.filters(emailid)}.get(o["filter_no"])
        if current is None:
            raise AdminError(f"filter No {o['filter_no']} not found for {emailid}")
        rule = VFilter(emailid, o["filter_no"], o["name"] or current.filter_name, o["header"],
                       o["comparison"], o["keyword"] or "", o["folder"], bounce, 0)
        await store.update_filter(rule)
    else:
        if not await store.delete_filter(emailid, o["filter_no"]):
            raise AdminError(f"filter No {o['filter_no']} not found for {emailid}")
        if not await store.filters(emailid) and flag is not None:
            await admin._thread(_remove, flag)
    return 0


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=True)


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def main(argv=None) -> None:
    run_cli("vcfilter", USAGE, "vCsird:u:h:c:b:k:f:t:", _body, argv)


if __name__ == "__main__":
    main()
