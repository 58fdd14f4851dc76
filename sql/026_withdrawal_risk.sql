-- Withdrawals judged by the risk rules (issue 14): the decision each request was given (its
-- outcome, score, rule version and the rules that fired with the values they saw), or NULL
-- for a request judged by no rule set (before this, or paid out by the settlement job).
ALTER TABLE withdrawals ADD COLUMN risk jsonb;
