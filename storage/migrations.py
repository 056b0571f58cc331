"""The schema, as numbered migrations: entry N brings user_version N-1 to N. Append only; never edit a shipped one."""

MIGRATIONS: list[str] = [
    # 1: jobs, their events, and the outbox of notices to deliver
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('llm', 'vlm')),
        state TEXT NOT NULL,
        export_state TEXT NOT NULL DEFAULT 'none',
        recipe TEXT NOT NULL,
        overrides TEXT NOT NULL DEFAULT '{}',
        argv TEXT NOT NULL,
        env TEXT NOT NULL DEFAULT '{}',
        gpus TEXT NOT NULL,
        output_dir TEXT NOT NULL,
        run_dir TEXT,
        log_path TEXT,
        export_dir TEXT,
        export_log_path TEXT,
        pid INTEGER,
        proc_start_time REAL,
        host TEXT,
        backend TEXT NOT NULL DEFAULT 'local',
        backend_job_id TEXT,
        export_pid INTEGER,
        export_proc_start_time REAL,
        export_backend_job_id TEXT,
        step INTEGER,
        max_steps INTEGER,
        loss REAL,
        eval_loss REAL,
        learning_rate REAL,
        epoch REAL,
        elapsed_s REAL,
        remaining_s REAL,
        speed_s_per_it REAL,
        gpu_mem_gib REAL,
        last_checkpoint TEXT,
        best_checkpoint TEXT,
        train_loss REAL,
        exit_code INTEGER,
        error_class TEXT,
        error_message TEXT,
        error_hint TEXT,
        stopped_by TEXT,
        user_id TEXT,
        channel_id TEXT,
        card_ts TEXT,
        queue_reason TEXT,
        queue_seq INTEGER NOT NULL DEFAULT 0,
        version INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL
    );
    CREATE INDEX jobs_state ON jobs (state, queue_seq);
    CREATE INDEX jobs_kind_created ON jobs (kind, created_at);
    CREATE INDEX jobs_created ON jobs (created_at);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}',
        at REAL NOT NULL
    );
    CREATE INDEX events_job ON events (job_id, id);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        delivered_at REAL,
        last_error TEXT
    );
    CREATE INDEX outbox_pending ON outbox (delivered_at, job_id, id);
    """,
    # 2: the supervisor asks every tick which exports are under way: keep that off a full table scan
    """
    CREATE INDEX jobs_exporting ON jobs (export_state) WHERE export_state = 'exporting';
    """,
    # 3: a client's Idempotency-Key for its create request (HTTP API): a retried POST finds the job it made;
    # lists page newest first by (created_at, queue_seq): indexes in that order, so a page reads only its rows
    """
    ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
    CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_newest ON jobs (created_at, queue_seq);
    CREATE INDEX jobs_kind_newest ON jobs (kind, created_at, queue_seq);
    """,
    # 4: lists by state (`?status=` over HTTP, `list state=...`) page newest first too, with or without a kind:
    # without these a state few jobs are in was found by reading every job of the kind
    """
    CREATE INDEX jobs_state_newest ON jobs (state, created_at, queue_seq);
    CREATE INDEX jobs_kind_state_newest ON jobs (kind, state, created_at, queue_seq);
    """,
    # 5: the GPU an export runs on (a JSON list; empty: the CPU), which it holds until it ends
    """
    ALTER TABLE jobs ADD COLUMN export_gpus TEXT NOT NULL DEFAULT '[]';
    """,
    # 6: the web page's signed-in sessions, kept here so the cookie holds only their id (no trace of the token):
    # sign-out ends one, and each ends with the token it was made with (token_ref: a keyed hash, server side only)
    """
    CREATE TABLE web_sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        token_ref TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX web_sessions_created ON web_sessions (created_at);
    """,
    # 7: each launch's token (models.Run.launch_token), written before its process is started: a bot that died
    # mid-launch finds that process again by it, or knows that none was started, and never starts a second
    """
    ALTER TABLE jobs ADD COLUMN launch_token TEXT;
    ALTER TABLE jobs ADD COLUMN export_launch_token TEXT;
    """,
    # 8: events as typed facts (storage/events.py: their fields as JSON; rows of before keep their text), and a
    # stop's deadlines on the job's row, so a restarted bot escalates SIGINT -> SIGTERM -> SIGKILL on the same clock
    """
    ALTER TABLE events ADD COLUMN facts TEXT;
    ALTER TABLE jobs ADD COLUMN stop_term_at REAL;
    ALTER TABLE jobs ADD COLUMN stop_kill_at REAL;
    ALTER TABLE jobs ADD COLUMN stop_interrupted_at REAL;
    """,
]
