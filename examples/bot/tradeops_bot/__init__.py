"""Reference trading bot of tradeops.stack (paper trading only).

One program, one role per process (env ``BOT_ROLE``): market_data, signal_engine,
risk_manager, paper_execution, db_writer. See docs/reference-stack.md.
"""
