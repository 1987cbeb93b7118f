"""Storage: the only package that opens database sessions or imports SQLAlchemy for a track's ledger.

`ledger.Ledger` writes and reads rows; `queries` holds the read-side queries of the dashboard and
reports; `schema` versions the tables with Alembic (`migrations/`).
"""
