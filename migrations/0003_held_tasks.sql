-- Every heartbeat looks for tasks its node still holds: an index of only
-- those keeps that proportional to what the node holds, not to every task
-- it has ever run.
CREATE INDEX tasks_held ON tasks(node) WHERE held = 1;
