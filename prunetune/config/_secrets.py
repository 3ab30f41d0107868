"""The study's storage URL: its secrets kept out of files, logs and errors, and the problems that
would keep it from opening, said before anything runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

from prunetune.errors import ConfigError


#: Names the study's database in full (password included) without writing it anywhere.
STORAGE_ENV = "PRUNETUNE_STORAGE"
MASK = "***"
STORAGE_KEY = "search.storage"

#: Query parameters whose values are secrets (``?password=...``, ``?sslpassword=...``, tokens).
_SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token|key|credential", re.IGNORECASE)

#: pip package of each SQLAlchemy driver a study's URL may name (``dialect+driver://``).
DRIVER_PACKAGES: dict[str, str] = {
    "psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "pg8000": "pg8000", "asyncpg": "asyncpg",
    "mysqldb": "mysqlclient", "pymysql": "pymysql", "mysqlconnector": "mysql-connector-python",
    "mariadbconnector": "mariadb", "oracledb": "oracledb", "cx_oracle": "cx_Oracle", "pyodbc": "pyodbc",
    "pymssql": "pymssql",
}
_STORAGE_EXAMPLE = ("expected a SQLAlchemy URL such as sqlite:////absolute/path/study.db or "
                    "postgresql://user:password@host:5432/dbname (null: study.db in the run directory)")


def _split_url(url: str) -> tuple[str, str, str, str]:
    """(``scheme://``, user info, the rest up to the query, ``?query``) of a URL.

    The user info ends at the *last* ``@`` before the query, so that a password holding ``@``
    (which SQLAlchemy itself would cut at the first one) is taken whole.
    """
    head, sep, rest = url.partition("://")
    if not sep:
        return "", "", url, ""
    body, question, query = rest.partition("?")
    if head.startswith("sqlite"):  # a SQLite URL is a path: an "@" in it is part of a name
        return head + sep, "", body, question + query
    userinfo, at, location = body.rpartition("@")
    return head + sep, userinfo + at, location, question + query


def _password(userinfo: str) -> str | None:
    user, colon, password = userinfo.removesuffix("@").partition(":")
    return password if colon and "/" not in user else None


def _secret_parameters(query: str) -> list[tuple[str, str]]:
    pairs = [part.partition("=") for part in query.removeprefix("?").split("&") if part]
    return [(name, value) for name, _, value in pairs if _SECRET_PARAMETER.search(name) and value]


def redact_url(url: str) -> str:
    """``url`` with its password masked, in the user info and in the query
    (``postgresql://user:***@host/db?sslpassword=***``): safe to write or print."""
    scheme, userinfo, location, query = _split_url(url)
    if _password(userinfo) is not None:
        userinfo = f"{userinfo.partition(':')[0]}:{MASK}@"
    for name, value in _secret_parameters(query):
        query = query.replace(f"{name}={value}", f"{name}={MASK}")
    return scheme + userinfo + location + query


def _written_secrets(url: str) -> list[str]:
    """The secrets of ``url`` as written (masked ones included)."""
    _, userinfo, _, query = _split_url(url)
    return [secret for secret in (_password(userinfo), *(v for _, v in _secret_parameters(query))) if secret]


def url_secrets(url: str) -> list[str]:
    """The secrets ``url`` holds (its password, secret query values), longest first."""
    return sorted({secret for secret in _written_secrets(url) if secret != MASK}, key=len, reverse=True)


def without_url_secrets(text: str, url: str) -> str:
    """``text`` (a driver's error message, say) with every secret of ``url`` masked."""
    for secret in url_secrets(url):
        text = text.replace(secret, MASK)
    return text


def storage_url(configured: str | None, default: str) -> str:
    """The study's database: ``PRUNETUNE_STORAGE``, else ``search.storage``, else ``default``.

    A configuration read back from a run directory has the password masked; then the full URL
    must come from the environment.
    """
    url = os.environ.get(STORAGE_ENV) or configured or default
    if MASK in _written_secrets(url):
        key = STORAGE_ENV if os.environ.get(STORAGE_ENV) else STORAGE_KEY
        raise ConfigError(f"{key} = {url!r}: the password is not stored in the run directory; set "
                          f"{STORAGE_ENV} to the full URL to reach this study")
    return url


def storage_problems(url: str, *, key: str = STORAGE_KEY, here: bool = True) -> list[str]:
    """What keeps ``url`` from opening a study, found without connecting: the URL's form, a
    password that would be cut and, with ``here``, a driver this machine lacks or a SQLite
    folder it does not have (a configuration is checked in form wherever it is read; the
    driver and the folder where the study is opened)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = redact_url(url)
    scheme, userinfo, _, _ = _split_url(url)
    if "@" in userinfo.removesuffix("@"):
        return [f"{key} = {shown!r}: the user or password holds '@', which ends the user part of a URL (the "
                "rest would be read as the host); percent-encode it: '@' as %40, ':' as %3A, '/' as %2F "
                "(urllib.parse.quote(password, safe=''))"]
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return [f"{key} = {shown!r}: not a database URL; {_STORAGE_EXAMPLE}"]
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        return [f"{key} = {shown!r}: SQLAlchemy has no database dialect {parsed.get_backend_name()!r}; "
                f"{_STORAGE_EXAMPLE}"]
    if not here:
        return []
    try:
        dialect.import_dbapi()
    except ImportError:
        return [f"{key} = {shown!r}: {_driver_missing(parsed.get_backend_name(), dialect.driver, scheme)}"]
    if dialect.name == "sqlite" and parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).expanduser().parent
        if not folder.is_dir():
            return [f"{key} = {shown!r}: folder {str(folder)!r} does not exist; create it, or leave {key} "
                    "null for study.db in the run directory"]
    return []


def _driver_missing(backend: str, driver: str, scheme: str) -> str:
    package = DRIVER_PACKAGES.get(driver, driver)
    named = "+" in scheme
    which = f"the driver {driver}" if named else f"{driver}, SQLAlchemy's default driver for {backend}://,"
    advice = f"{which} is not installed: pip install {package}"
    if backend == "postgresql" and not named:
        advice += " (psycopg 3; for psycopg2 write postgresql+psycopg2:// and pip install psycopg2-binary)"
    return advice


def storage_failure(url: str, error: BaseException) -> ConfigError:
    """A study that could not be opened at ``url``, said with the URL's secrets masked: what
    :func:`storage_problems` finds (the driver to install, the missing folder), else the cause."""
    key = STORAGE_ENV if os.environ.get(STORAGE_ENV) == url else STORAGE_KEY
    problems = storage_problems(url, key=key)
    if problems:
        return ConfigError(problems)
    cause = getattr(error, "orig", None) or error
    reason = without_url_secrets(str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__,
                                 url)
    check = ("that its folder is writable and the file, if any, is a SQLite database" if url.startswith("sqlite")
             else "that the server is up and reachable from this machine, and the user, password and database name")
    return ConfigError(f"{key} = {redact_url(url)!r}: cannot open the study's database ({type(cause).__name__}: "
                       f"{reason}); check {check}")
