"""The ledger: the only place SQLAlchemy sessions are opened for a track."""
