-- The scheduler reads the head of the queue in priority order on every
-- pass: an index in that order spares it a sort of every queued run.
CREATE INDEX runs_queue ON runs(status, priority DESC, seq);
