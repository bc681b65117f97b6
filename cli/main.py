"""The `mpaas` command."""

from __future__ import annotations

import sys

import click

from mpaas import __version__
from mpaas.cli import admin, demo, keys, operator, packages, publish, users
from mpaas.cli import analytics as analytics_cli
from mpaas.cli import banking as banking_cli
from mpaas.cli import events as events_cli
from mpaas.cli import ledger as ledger_cli
from mpaas.cli import lifecycle as _lifecycle  # noqa: F401 - adds delete/rename to apps, channels, packages
from mpaas.cli import operations as operations_cli
from mpaas.cli import push as push_cli
from mpaas.cli import releases as releases_cli
from mpaas.cli import reports as reports_cli
from mpaas.cli import risk as risk_cli
from mpaas.errors import MpaasError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mpaas")
def cli() -> None:
    """mpaas: publish offline packages, bundles and hotfixes; roll them out; push; measure.

    Admin commands talk to a server over HTTP (see `mpaas login`); `init`, `db`,
    `server` and `demo` are operator commands that use the data directory directly.
    """


for command in (
    operator.init_cmd,
    operator.db_group,
    operator.config_group,
    operator.server_cmd,
    demo.demo_cmd,
    admin.login_cmd,
    admin.logout_cmd,
    admin.whoami_cmd,
    admin.tokens_group,
    users.users_group,
    admin.apps_group,
    admin.channels_group,
    admin.audit_group,
    publish.publish_cmd,
    packages.packages_group,
    packages.diff_cmd,
    packages.gc_cmd,
    releases_cli.release_cmd,
    releases_cli.releases_group,
    push_cli.push_group,
    push_cli.devices_group,
    keys.keys_group,
    analytics_cli.analytics_group,
    events_cli.events_group,
    operations_cli.operations_group,
    banking_cli.banking_group,
    banking_cli.gateway_group,
    risk_cli.risk_group,
    ledger_cli.ledger_group,
):
    cli.add_command(command)
reports_cli.register(analytics_cli.analytics_group)


def main() -> None:
    """Entry point: every failure is one line on stderr and a non-zero exit."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MpaasError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        click.echo(f"error: unexpected {type(exc).__name__}: {exc}".splitlines()[0], err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
