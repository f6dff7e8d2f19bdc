"""vmoddomain: the non-existent-user handler of a domain (``-h`` with ``-f 0|1``
for vdelivermail or vfilter) and its domain limits switch (``-l 0|1``)."""

from __future__ import annotations

from indimail.vdomain.admin import run_cli
from indimail.vdomain.modify import modify_domain

USAGE = ("usage: vmoddomain [--home dir] [options] domain\n"
         "options: -v         (verbose)\n"
         "         -l 0|1     Enable Domain Limits\n"
         "         -f 0|1     Enable VFILTER capability\n"
         "         -h handler (can be one of the following\n"
         "                    delete\n"
         "                    bounce-no-mailbox\n"
         "                    Maildir    - Maildir Path\n"
         "                    email      - Email Addres\n"
         "                    IP Address - SMTPROUTE/QMTPROUTE spec)\n"
         "you need to specify handler and vfilter option or domain limits")


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SystemExit(USAGE) from None


async def _body(admin, opts, args):
    values = dict(opts)
    handler = values.get("-h")
    use_vfilter = _number(values["-f"]) if "-f" in values else None
    limits = _number(values["-l"]) if "-l" in values else None
    if (use_vfilter is not None) != (handler is not None) or \
            (handler is None and limits is None) or len(args) != 1:
        raise SystemExit(USAGE)
    await modify_domain(admin, args[0], handler=handler, use_vfilter=use_vfilter,
                        domain_limits=limits)
    return 0


def main(argv=None) -> None:
    run_cli("vmoddomain", USAGE, "avf:h:l:", _body, argv)


if __name__ == "__main__":
    main()
