"""dbinfo: the cluster's databases - the mcdinfo file and the dbinfo table kept in step.

As upstream, every run first brings the file and the table of the central
database together (``LoadDbInfo_TXT``): whichever changed last (the file's
modification time against the newest dbinfo row of that file) is copied to
the other, and a written file gets the table's time so the next run sees
them equal.  Then ``-s`` shows the records (connecting to each database),
``-i``/``-u``/``-r`` insert, update or remove a record in the table and
rewrite the file, ``-e`` edits the file with ``$EDITOR``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from twisted.internet import threads

from indimail.config.files import write_atomic
from indimail.vdomain.admin import run_cli
from indimail.vdomain.backend import (McdEntry, MysqlBackend, format_mcdinfo, mcdinfo_path,
                                      parse_mcdinfo)
from indimail.vdomain.store import VStore, _epoch

USAGE = """usage: dbinfo [options] MCDF_file_PATH
       dbinfo -i -S MySQL_server  -p port -o use_ssl -D database -U user -P password  [-c] -d domain -m mdahost MCDF_file
       dbinfo -u -S MySQL_server [-p port -o use_ssl -D database -U user -P password] [-c] -d domain -m mdahost MCDF_file
       dbinfo -r -d domain -m mdahost MCDF_file
       dbinfo -s [-d domain] [-m mdahost] MCDF_file
       dbinfo -e
options: -v verbose
         -i Insert Entry
         -u Update Entry
         -r Remove Entry
         -s Show   Entries
         -d Domain Name
         -c If Clustered
         -S MySQL Server IP
         -p MySQL Port
         -o Use SSL
         -D MySQL Database Name
         -U MySQL User Name
         -P MySQL Password
         -m Mail Store IP
         -e Edit Dbinfo using vi
         -l Row Format display"""

SEPARATOR = "--------------------------\n"


def _thread(reactor, fn, *args):
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)


# -- the file and the table ------------------------------------------------------

async def table_time(store: VStore, filename: str) -> float | None:
    """The time of the newest dbinfo row of *filename*; None without rows."""
    rows = await store._query("SELECT timestamp FROM dbinfo WHERE filename = %s", filename)
    times = [_epoch(r[0]) for r in rows if r[0] is not None]
    return max(times) if times else None


def _file_state(path: Path) -> tuple[float | None, list[McdEntry]]:
    """Blocking: (modification time, records) of the mcdinfo file; (None, []) if absent."""
    try:
        mtime = int(path.stat().st_mtime)
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None, []
    return mtime, parse_mcdinfo(text, str(path))


def write_mcdinfo(path: Path, entries: list[McdEntry], mtime: float) -> None:
    """Blocking: write *entries* as upstream ``writemcdinfo``, dated *mtime*."""
    write_atomic(path, format_mcdinfo(entries).encode(), 0o644)
    os.utime(path, (time.time(), int(mtime)))


async def write_from_table(store: VStore, path: Path) -> list[McdEntry]:
    """Rewrite the file from the table's rows of it, dated like the table."""
    entries = await store.dbinfo(str(path))
    when = await table_time(store, str(path))
    await _thread(store.reactor, write_mcdinfo, path, entries,
                  when if when is not None else time.time())
    return entries


async def sync_mcdinfo(store: VStore, path: Path, say=None) -> list[McdEntry]:
    """Bring the mcdinfo file and the dbinfo table together; the records.

    The newer side wins: a file newer than the table (or a table without
    rows) replaces the table's rows, dated with the file's time; a table
    newer than the file (or no file) rewrites the file."""
    say = say or (lambda text: None)
    file_time, file_entries = await _file_state_async(store, path)
    db_time = await table_time(store, str(path))
    if file_time is None and db_time is None:
        return []
    if db_time is None or (file_time is not None and file_time > db_time):
        say("Updating Table dbinfo\n")
        await store.set_dbinfo(str(path), file_entries, file_time)
        return file_entries
    if file_time is None or db_time > file_time:
        say(f"Updating File {path}\n")
        return await write_from_table(store, path)
    say("Nothing to update\n")
    return file_entries


async def _file_state_async(store, path):
    return await _thread(store.reactor, _file_state, path)


# -- showing ------------------------------------------------------------------------

def _local_ip(control: Path) -> str:
    """Blocking: the first line of ``control/localiphost``, else ``localhost``."""
    try:
        lines = (control / "localiphost").read_text().split()
    except OSError:
        return "localhost"
    return lines[0] if lines else "localhost"


async def auto_entries(store: VStore, entries: list[McdEntry], control: Path) -> list[McdEntry]:
    """Upstream ``localDbInfo``: the central database's domains that mcdinfo
    does not list, as records of the central (``host.mysql``) database."""
    backend = store.backend
    if not isinstance(backend, MysqlBackend):
        return []
    listed = {e.domain.lower() for e in entries}
    domains = [d for d in await VStore.list_domains(store) if d not in listed]
    if not domains:
        return []
    mdahost = await _thread(store.reactor, _local_ip, control)
    return [McdEntry(d, 0, backend.socket or backend.host, mdahost, backend.port,
                     backend.ssl, backend.database, backend.user, backend.password)
            for d in domains]


def _status(entry: McdEntry) -> dict:
    """Blocking: connect to *entry*'s database and read what upstream shows."""
    import pymysql
    try:
        conn = entry.backend().connect()
    except Exception as exc:
        return {"error": str(exc.args[-1]) if exc.args else str(exc)}
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('Uptime', 'Threads_connected',"
                        " 'Questions', 'Slow_queries', 'Opens', 'Flush_commands', 'Open_tables')")
            status = {k: v for k, v in cur.fetchall()}
            cipher = None
            if entry.use_ssl:
                cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                row = cur.fetchone()
                cipher = row[1] if row else ""
        uptime = int(status.get("Uptime", 0) or 0)
        questions = int(status.get("Questions", 0) or 0)
        stat = (f"Uptime: {uptime}  Threads: {status.get('Threads_connected', 0)}  "
                f"Questions: {questions}  Slow queries: {status.get('Slow_queries', 0)}  "
                f"Opens: {status.get('Opens', 0)}  Flush tables: {status.get('Flush_commands', 0)}"
                f"  Open tables: {status.get('Open_tables', 0)}  Queries per second avg: "
                f"{questions / uptime if uptime else 0:.3f}")
        host_info = ("Localhost via UNIX socket" if conn.unix_socket
                     else f"{conn.host} via TCP/IP")
        return {"fd": conn._sock.fileno() if conn._sock else -1, "stat": stat,
                "host_info": host_info, "protocol": conn.protocol_version,
                "server": conn.get_server_info(), "cipher": cipher}
    except pymysql.MySQLError as exc:
        return {"error": str(exc.args[-1]) if exc.args else str(exc)}
    finally:
        conn.close()


def _dist_flag(entries: list[McdEntry], domain: str) -> int:
    first = next((e for e in entries if e.domain == domain), None)
    return 0 if first is None else (1 if first.distributed > 0 else first.distributed)


async def show(store: VStore, entries: list[McdEntry], auto: list[McdEntry], *,
               domain: str | None, mdahost: str | None, rows: bool,
               filename: str | None) -> tuple[str, bool]:
    """The text of ``dbinfo -s`` (``-l``: one line a record); and whether any matched."""
    import pymysql
    out: list[str] = []
    everything = [(e, False) for e in entries] + [(e, True) for e in auto]
    matched = 0
    for count, (e, is_auto) in enumerate(everything, 1):
        if mdahost and mdahost != e.mdahost or domain and domain != e.domain:
            continue
        matched += 1
        dist = _dist_flag(entries + auto, e.domain)
        if rows:
            socket = e.server if e.server[:1] in ("/", ".") else None
            where = f"{socket} 0 " if socket else f"{e.port} {1 if e.use_ssl else 0} "
            out.append(f"{'auto ' if is_auto else 'DBINFO '} {e.domain} {dist:2d} {e.server} "
                       f"{e.mdahost} {where}{e.database} {e.user} "
                       f"{filename + ' ' if filename else ''}{e.password}\n")
            continue
        if matched == 1:
            out.append(f"MySQL Client Version: PyMySQL {pymysql.__version__}\n")
        status = await _thread(store.reactor, _status, e)
        out.append(f"domain         {e.domain} - "
                   f"{'Distributed' if dist == 1 else 'Non Distributed'}\n")
        out.append(f"sqlserver[{count:03d}] {e.server}\n")
        if e.server[:1] in ("/", "."):
            out.append(f"Unix   Socket  {e.server}\n")
        else:
            out.append(f"TCP/IP Port    {e.port}\n")
        out.append(f"database       {e.database}\nuser           {e.user}\n"
                   f"password       {e.password}\nfd             {status.get('fd', -1)}\n"
                   f"DBINFO Method  {'Auto' if is_auto else 'DBINFO'}\n")
        if e.mdahost:
            out.append(f"mda host       {e.mdahost}\n")
        if "error" in status:
            out.append(f"MySQL Status   mysql_real_connect: {status['error']}\n{SEPARATOR}")
            continue
        out.append(f"MySQL Status   {status['stat']}\nconnection to  {status['host_info']}\n"
                   f"protocol       {status['protocol']}\nserver version {status['server']}\n"
                   f"Use SSL        {'Yes' if e.use_ssl else 'No'}\n")
        if e.use_ssl and e.server[:1] not in ("/", "."):
            out.append(f"SSL Cipher     {status.get('cipher') or ''}\n")
        out.append(SEPARATOR)
    return "".join(out), matched > 0


# -- the command ----------------------------------------------------------------------

class UsageError(Exception):
    pass


def parse_options(opts, args) -> dict:
    """Upstream ``get_options``: the action and its fields; UsageError when incomplete."""
    o = {"action": None, "verbose": False, "rows": False, "domain": None, "distributed": 0,
         "server": None, "port": None, "use_ssl": None, "database": None, "user": None,
         "password": None, "mdahost": None}
    actions = {"-s": "show", "-i": "insert", "-u": "update", "-r": "remove", "-e": "edit"}
    fields = {"-d": "domain", "-S": "server", "-D": "database", "-U": "user",
              "-P": "password", "-m": "mdahost"}
    for key, value in opts:
        if key in actions:
            o["action"] = actions[key]
        elif key == "-v":
            o["verbose"] = True
        elif key == "-l":
            o["rows"] = True
        elif key == "-c":
            o["distributed"] = 1
        elif key in fields:
            o[fields[key]] = value
        elif key in ("-p", "-o"):
            try:
                o["port" if key == "-p" else "use_ssl"] = int(value)
            except ValueError:
                raise UsageError() from None
    o["filename"] = args[0] if args else None
    action = o["action"]
    if action is None or (action not in ("show", "edit") and not o["filename"]):
        raise UsageError()
    if action == "insert" and not all(o[k] is not None for k in
                                      ("server", "port", "database", "user", "password")):
        raise UsageError()
    if action == "update" and not o["server"]:
        raise UsageError()
    if action in ("insert", "update", "remove") and not (o["domain"] and o["mdahost"]):
        raise UsageError()
    return o


async def _body(admin, opts, args):
    try:
        o = parse_options(opts, args)
    except UsageError:
        sys.stderr.write(f"dbinfo: warning: \n{USAGE}\n")
        return 100
    store, home = admin.store, admin.home
    env = dict(os.environ)
    if o["filename"]:
        env["MCDFILE"] = o["filename"]
    path = mcdinfo_path(home, env).absolute()

    def say(text):
        if o["verbose"]:
            sys.stdout.write(f"dbinfo: {text}")

    entries = await sync_mcdinfo(store, path, say)
    action = o["action"]
    if action == "show":
        auto = await auto_entries(store, entries, Path(home.control))
        text, matched = await show(store, entries, auto, domain=o["domain"],
                                   mdahost=o["mdahost"], rows=o["rows"],
                                   filename=o["filename"])
        sys.stdout.write(text)
        return 0 if matched else 1
    if action == "edit":
        return await _edit(admin, path, entries)
    key = (o["domain"], o["mdahost"])
    current = next((e for e in entries if (e.domain, e.mdahost) == key), None)
    if action == "insert":
        if current is not None:
            sys.stderr.write(f"dbinfo: dbinfoAdd: domain {key[0]} mdahost {key[1]} exists\n")
            return 1
        new = McdEntry(o["domain"], o["distributed"], o["server"], o["mdahost"], o["port"],
                       bool(1 if o["use_ssl"] is None else o["use_ssl"]), o["database"],
                       o["user"], o["password"])
        entries = entries + [new]
        say(f"Added domain {o['domain']}\n")
    elif current is None:
        sys.stderr.write(f"dbinfo: no dbinfo entry for domain {key[0]} mdahost {key[1]}\n")
        return 1
    elif action == "update":
        new = McdEntry(current.domain, o["distributed"], o["server"], current.mdahost,
                       current.port if o["port"] is None else o["port"],
                       current.use_ssl if o["use_ssl"] is None else bool(o["use_ssl"]),
                       o["database"] or current.database, o["user"] or current.user,
                       o["password"] or current.password)
        entries = [new if e is current else e for e in entries]
        say(f"Updated domain {current.domain}\n")
    else:
        entries = [e for e in entries if e is not current]
        say(f"Deleted domain {current.domain}\n")
    await store.set_dbinfo(str(path), entries, admin.clock())
    await write_from_table(store, path)
    return 0


async def _edit(admin, path: Path, entries: list[McdEntry]) -> int:
    """``-e``: write the file if missing, run ``$EDITOR`` (vi) on it, load it into the table."""
    import subprocess
    store = admin.store
    sys.stdout.write(f"dbinfo: Loaded {len(entries)} entries in file {path}\n")
    if entries and not path.exists():
        await write_from_table(store, path)
    editor = os.environ.get("EDITOR") or "vi"
    sys.stdout.write(f"dbinfo: Editor is {editor}\n")
    sys.stdout.flush()
    before = await _file_state_async(store, path)
    await _thread(store.reactor, lambda: subprocess.call(f"{editor} {path}", shell=True))
    after = await _file_state_async(store, path)
    if after[1] != before[1]:   # changed within the table's second still counts
        await store.set_dbinfo(str(path), after[1], admin.clock())
        await write_from_table(store, path)
    return 0


def main(argv=None) -> None:
    run_cli("dbinfo", USAGE, "viurseld:cS:p:o:D:U:P:m:", _body, argv)


if __name__ == "__main__":
    main()
