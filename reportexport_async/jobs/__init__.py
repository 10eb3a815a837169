"""The jobs: the driver of one export's lifecycle, the orchestrator of many, and the planners
(backfill and sync) that hand it work. The only writers of the ledger."""
