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
    # 8: what request an Idempotency-Key came with: the same key with another request is refused, not answered
    # with the first job
    """
    ALTER TABLE jobs ADD COLUMN idempotency_fingerprint TEXT;
    """,
    # 9: every front end reads the outbox from its own place. `outbox_readers`: each reader's position (it has every
    # notice up to it) and when it was last seen; `outbox_deliveries`: what a reader that delivers out of order (Slack)
    # has tried or delivered past its position. Slack's own state leaves the job: its card (channel, ts) goes to
    # `slack_cards` (written by bot/ only), and the channel a job was asked from is named as Slack's. Slack, where it
    # was used, becomes the reader `slack`, placed before the oldest notice it had not delivered, its tries kept;
    # what it had delivered goes. A created event keeps what the speed profile changed (it was only in the notice).
    """
    CREATE TABLE slack_cards (
        job_id TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        ts TEXT NOT NULL
    );
    INSERT INTO slack_cards (job_id, channel, ts)
        SELECT id, channel_id, card_ts FROM jobs WHERE card_ts IS NOT NULL AND channel_id IS NOT NULL;
    INSERT OR IGNORE INTO slack_cards (job_id, channel, ts)
        SELECT job_id, json_extract(data, '$.channel_id'), json_extract(data, '$.card_ts') FROM outbox
        WHERE topic = 'job_deleted' AND delivered_at IS NULL AND json_valid(data)
          AND json_extract(data, '$.channel_id') IS NOT NULL AND json_extract(data, '$.card_ts') IS NOT NULL;
    ALTER TABLE jobs DROP COLUMN card_ts;
    ALTER TABLE jobs RENAME COLUMN channel_id TO slack_channel;
    UPDATE events SET data = json_object('profile_notes', json_extract(o.data, '$.profile_notes'))
        FROM outbox o
        WHERE events.kind = 'created' AND o.job_id = events.job_id AND o.topic = 'job_created' AND json_valid(o.data)
          AND json_type(o.data, '$.profile_notes') = 'array' AND json_array_length(o.data, '$.profile_notes') > 0;
    CREATE TABLE outbox_readers (
        name TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        seen_at REAL NOT NULL,
        keep_s REAL NOT NULL
    );
    CREATE TABLE outbox_deliveries (
        reader TEXT NOT NULL,
        notice_id INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        delivered_at REAL,
        last_error TEXT,
        PRIMARY KEY (reader, notice_id)
    ) WITHOUT ROWID;
    INSERT INTO outbox_readers (name, position, seen_at, keep_s)
        SELECT 'slack',
               COALESCE((SELECT MIN(id) - 1 FROM outbox WHERE delivered_at IS NULL),
                        (SELECT MAX(id) FROM outbox), 0),
               (julianday('now') - 2440587.5) * 86400.0, 604800.0
        WHERE EXISTS (SELECT 1 FROM jobs WHERE slack_channel IS NOT NULL) OR EXISTS (SELECT 1 FROM slack_cards);
    INSERT INTO outbox_deliveries (reader, notice_id, attempts, next_attempt_at, delivered_at, last_error)
        SELECT 'slack', o.id, o.attempts, o.next_attempt_at, o.delivered_at, o.last_error
        FROM outbox o JOIN outbox_readers r ON r.name = 'slack'
        WHERE o.id > r.position AND (o.attempts > 0 OR o.delivered_at IS NOT NULL);
    DELETE FROM outbox WHERE id <= COALESCE((SELECT position FROM outbox_readers WHERE name = 'slack'),
                                            (SELECT MAX(id) FROM outbox));
    DROP INDEX outbox_pending;
    ALTER TABLE outbox DROP COLUMN attempts;
    ALTER TABLE outbox DROP COLUMN next_attempt_at;
    ALTER TABLE outbox DROP COLUMN delivered_at;
    ALTER TABLE outbox DROP COLUMN last_error;
    CREATE INDEX outbox_job ON outbox (job_id, id);
    """,
    # 10: a try session of the job's model (runner/trying.py): its state, the GPU it holds or waits for, its process
    # (found again by pid and start time after a restart) and its place in the queue's line while it waits; a
    # Slack thread reply finds its job's card by where it is (slack_cards' channel and ts)
    """
    ALTER TABLE jobs ADD COLUMN try_state TEXT NOT NULL DEFAULT 'none';
    ALTER TABLE jobs ADD COLUMN try_gpus TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE jobs ADD COLUMN try_pid INTEGER;
    ALTER TABLE jobs ADD COLUMN try_proc_start_time REAL;
    ALTER TABLE jobs ADD COLUMN try_backend_job_id TEXT;
    ALTER TABLE jobs ADD COLUMN try_log_path TEXT;
    ALTER TABLE jobs ADD COLUMN try_launch_token TEXT;
    ALTER TABLE jobs ADD COLUMN try_seq REAL;
    CREATE INDEX jobs_trying ON jobs (try_state) WHERE try_state != 'none';
    CREATE INDEX slack_cards_at ON slack_cards (channel, ts);
    """,
    # 11: events as typed facts (storage/events.py: their fields as JSON; rows of before keep their text), and a
    # stop's deadlines on the job's row, so a restarted bot escalates SIGINT -> SIGTERM -> SIGKILL on the same clock.
    # A created event that kept the profile's notes in its data (migration 9) keeps them in its facts, with who made
    # the job (from its words "created by X"); notes kept as words become legacy notes, shown as they are. Events
    # that kept a failure or who stopped a job in their data (before the types) keep them as their facts, and so do
    # a try session's events (migration 10's: where it ran, how long it loaded, why it ended).
    """
    ALTER TABLE events ADD COLUMN facts TEXT;
    ALTER TABLE jobs ADD COLUMN stop_term_at REAL;
    ALTER TABLE jobs ADD COLUMN stop_kill_at REAL;
    ALTER TABLE jobs ADD COLUMN stop_interrupted_at REAL;
    UPDATE events SET facts = json_object(
            'v', 1,
            'by', CASE WHEN message LIKE 'created by %' AND message != 'created by console'
                       THEN json_object('id', substr(message, 12), 'code', 'user')
                       ELSE json_object('code', 'console') END,
            'profile_notes', (SELECT json_group_array(CASE WHEN type = 'object' THEN json(value)
                                                            ELSE json_object('text', value, 'code', 'legacy') END)
                              FROM json_each(events.data, '$.profile_notes')))
        WHERE kind = 'created' AND facts IS NULL AND json_valid(data) AND json_type(data, '$.profile_notes') = 'array';
    UPDATE events SET facts = json_object('v', 1, 'failure', json_extract(data, '$.failure'),
                                          'command', json_extract(data, '$.command'))
        WHERE kind = 'failed' AND facts IS NULL AND json_valid(data) AND json_type(data, '$.failure') = 'object';
    UPDATE events SET facts = json_object('v', 1, 'failure', json_extract(data, '$.failure'),
                                          'at_start', json(CASE WHEN message LIKE 'export could not start%'
                                                                THEN 'true' ELSE 'false' END))
        WHERE kind = 'export_failed' AND facts IS NULL AND json_valid(data)
          AND json_type(data, '$.failure') = 'object';
    UPDATE events SET facts = json_object('v', 1, 'by', json_extract(data, '$.by'))
        WHERE kind = 'stopped' AND facts IS NULL AND json_valid(data) AND json_type(data, '$.by') = 'object';
    UPDATE events SET facts = json_object('v', 1, 'gpus', json_extract(data, '$.gpus'))
        WHERE kind = 'try_started' AND facts IS NULL AND json_valid(data) AND json_type(data, '$.gpus') = 'array';
    UPDATE events SET facts = json_object('v', 1, 'load_s', json_extract(data, '$.load_s'),
                                          'warm', json(CASE WHEN json_extract(data, '$.warm') THEN 'true'
                                                            ELSE 'false' END))
        WHERE kind = 'try_loaded' AND facts IS NULL AND json_valid(data)
          AND json_type(data, '$.load_s') IN ('real', 'integer');
    UPDATE events SET facts = json_object('v', 1, 'why', json_extract(data, '$.why'))
        WHERE kind = 'try_ended' AND facts IS NULL AND json_valid(data) AND json_type(data, '$.why') = 'text';
    """,
    # 12: jobs named (by whoever made them; else their output folder's last part) and noted. The history pages find
    # them by a case-insensitive substring of their name, folder, owner or id (`search_text`, lowercased, one field a
    # line: no search spans two): a rare one through job_search (FTS5 trigrams, its rows the jobs' rowids, kept by
    # triggers; trainbot never runs VACUUM, which may renumber rowids: after one, `INSERT INTO job_search(job_search)
    # VALUES ('rebuild')`), a common one along the list's index. Lists filter by owner ("my jobs") and sort by
    # duration or final loss along indexes too, both at once included.
    """
    ALTER TABLE jobs ADD COLUMN name TEXT NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN note TEXT NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN search_text TEXT NOT NULL DEFAULT '';
    UPDATE jobs SET name = substr(output_dir, length(rtrim(output_dir, replace(output_dir, '/', ''))) + 1);
    UPDATE jobs SET search_text = lower(id || char(10) || name || char(10) || output_dir || char(10)
                                        || coalesce(user_id, ''));
    CREATE VIRTUAL TABLE job_search USING fts5(search_text, content = 'jobs', tokenize = 'trigram');
    INSERT INTO job_search (job_search) VALUES ('rebuild');
    CREATE TRIGGER jobs_search_insert AFTER INSERT ON jobs BEGIN
        INSERT INTO job_search (rowid, search_text) VALUES (new.rowid, new.search_text);
    END;
    CREATE TRIGGER jobs_search_update AFTER UPDATE OF search_text ON jobs BEGIN
        INSERT INTO job_search (job_search, rowid, search_text) VALUES ('delete', old.rowid, old.search_text);
        INSERT INTO job_search (rowid, search_text) VALUES (new.rowid, new.search_text);
    END;
    CREATE TRIGGER jobs_search_delete AFTER DELETE ON jobs BEGIN
        INSERT INTO job_search (job_search, rowid, search_text) VALUES ('delete', old.rowid, old.search_text);
    END;
    CREATE INDEX jobs_owner_newest ON jobs (user_id, created_at, queue_seq);
    CREATE INDEX jobs_loss ON jobs (loss, created_at, queue_seq);
    CREATE INDEX jobs_duration ON jobs ((finished_at - started_at), created_at, queue_seq);
    CREATE INDEX jobs_owner_loss ON jobs (user_id, loss, created_at, queue_seq);
    CREATE INDEX jobs_owner_duration ON jobs (user_id, (finished_at - started_at), created_at, queue_seq);
    """,
    # 13: a Slack thread's try conversation (storage/slack_tries.py), kept so a restarted bot goes on with it.
    """
    CREATE TABLE slack_try_threads (
        channel TEXT NOT NULL,
        thread_ts TEXT NOT NULL,
        job_id TEXT NOT NULL,
        messages TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (channel, thread_ts)
    );
    CREATE INDEX slack_try_threads_updated ON slack_try_threads (updated_at);
    """,
]
