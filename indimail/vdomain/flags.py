"""pw_gid bits of IndiMail's user tables (``indimail.h``): what a user may not do."""

NO_PASSWD_CHNG = 0x01
NO_POP = 0x02
NO_WEBMAIL = 0x04
NO_IMAP = 0x08
BOUNCE_MAIL = 0x10
NO_RELAY = 0x20
NO_DIALUP = 0x40
QA_ADMIN = 0x80
V_OVERRIDE = 0x100
NO_SMTP = 0x200
V_USER0 = 0x400
V_USER1 = 0x800
V_USER2 = 0x1000
V_USER3 = 0x2000

FLAG_NAMES = {
    "NO_PASSWD_CHNG": NO_PASSWD_CHNG, "NO_POP": NO_POP, "NO_WEBMAIL": NO_WEBMAIL,
    "NO_IMAP": NO_IMAP, "BOUNCE_MAIL": BOUNCE_MAIL, "NO_RELAY": NO_RELAY,
    "NO_DIALUP": NO_DIALUP, "QA_ADMIN": QA_ADMIN, "V_OVERRIDE": V_OVERRIDE,
    "NO_SMTP": NO_SMTP, "V_USER0": V_USER0, "V_USER1": V_USER1,
    "V_USER2": V_USER2, "V_USER3": V_USER3,
}


def flag_names(gid: int) -> list[str]:
    """The names of the bits set in *gid*, lowest bit first."""
    return [name for name, bit in FLAG_NAMES.items() if gid & bit]
