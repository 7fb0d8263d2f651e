"""The implementations of the ``graphrec`` subcommands, one module per group.

:mod:`app.cli` builds the parser and imports a group's module only when one of its
commands runs, so these modules import the heavy layers (torch, MLflow, Feast) at their
top without slowing ``graphrec --help``. Each command takes the parsed
``argparse.Namespace`` and returns the process exit code. Results go to stdout; a step
that makes the operator wait (loading an index, validating a day, publishing) is wrapped in
:func:`app.progress.step`, which notes it on stderr.

* :mod:`app.commands.data`: simulate, load, validate, quarantine, contract
* :mod:`app.commands.pipeline`: demo, status
* :mod:`app.commands.publication`: versions, rollback, canary
* :mod:`app.commands.recommend`: recommend
* :mod:`app.commands.serve`: serve, mail-sink
* :mod:`app.commands.services`: services, airflow-env
"""
