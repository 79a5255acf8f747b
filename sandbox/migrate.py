"""Schema migrations of the control database, run with Alembic from code (no alembic.ini).

New revision after changing a model (numbered after the head, formatted with ruff)::

    .venv/bin/python -m sandbox.migrate revision -m "what changed"
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic configuration pointing at ``url`` and the packaged migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the control database at ``url`` up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` before the first migration."""
    if "alembic_version" not in inspect(engine).get_table_names():
        return None
    with engine.connect() as conn:
        value = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return str(value) if value is not None else None


def head_revision() -> str:
    """The newest revision shipped with the code."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def next_revision_id() -> str:
    """The id after the head's: revisions are numbered ``0001``, ``0002``, … (their files too)."""
    head = head_revision()
    return f"{int(head) + 1:04d}" if head.isdigit() else head + "_next"


def main(argv: list[str]) -> None:
    """Tiny developer entry point: ``revision -m MESSAGE`` autogenerates against a scratch SQLite,
    numbers the revision after the head, and formats the new file with the project's ruff."""
    import subprocess
    import tempfile

    if len(argv) != 3 or argv[0] != "revision" or argv[1] != "-m":
        print("usage: python -m sandbox.migrate revision -m MESSAGE", file=sys.stderr)
        raise SystemExit(2)
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/scratch.sqlite"
        upgrade(url)
        made = command.revision(
            alembic_config(url), message=argv[2], autogenerate=True, rev_id=next_revision_id()
        )
    paths = [script.path for script in (made if isinstance(made, list) else [made]) if script is not None]
    ruff = Path(sys.executable).with_name("ruff")  # the test extras install it beside this Python
    if not ruff.exists():
        print(f"wrote {', '.join(paths)}; ruff is not installed here: format it before committing")
        return
    subprocess.run([str(ruff), "check", "--fix", "--quiet", *paths], check=False)  # noqa: S603 - our own tool
    subprocess.run([str(ruff), "format", "--quiet", *paths], check=False)  # noqa: S603
    print(f"wrote {', '.join(paths)}")


if __name__ == "__main__":
    main(sys.argv[1:])
