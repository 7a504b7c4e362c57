"""Alembic's entry: runs the revisions on the connection `fdp_tasks.store.migrations` hands
over, inside the transaction it has begun (so the caller decides when it commits).

Only Alembic runs this file (it gives `context` its `config`); imported as a module of the
package, it does nothing."""

from alembic import context

config = getattr(context, "config", None)
if config is not None:
    context.configure(connection=config.attributes["connection"], render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
