-- 0012_derived_queued_event: a run's first event, "queued" at its
-- created_at, is no longer stored with each submission (a row and an index
-- entry per run in the submission's commit); reads derive it from the run's
-- row (store/runs.c). The ones stored before are removed, or they would
-- show twice.
DELETE FROM run_events WHERE seq IN (
    SELECT min(e.seq) FROM run_events e GROUP BY e.run_seq
) AND type = 'status' AND data = '{"status":"queued"}'
  AND time = (SELECT created_at FROM runs WHERE runs.seq = run_events.run_seq);
