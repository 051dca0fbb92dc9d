"""ledger pg functions

On PostgreSQL, the ledger's hold, capture, void and transfer (grant) run as
PL/pgSQL functions, one statement per request (issue 17, item 1):

- ``ledger_place_hold_v1``, ``ledger_capture_v1``, ``ledger_void_v1`` and
  ``ledger_transfer_v1`` do what ``credits.ledger.holds``, ``settle`` and
  ``service.grant`` do in Python: lock in id order, look the key up after the
  locks, check, move the counters under the overdraft guard, append the
  transfers, the hold parts and one audit event per transfer (the same
  canonical JSON and leaf hash as ``credits.audit.service``);
- a refusal is returned as a row whose ``refusal`` column holds a JSON
  document (what went wrong and its figures), never raised: raising would abort
  the caller's transaction, which a refusal on the Python path leaves usable.
  A broken invariant (an overdraft guard that trips after the checks) is raised
  with SQLSTATE ``LDG99`` and aborts it;
- helpers: ``ledger_event_json_v1`` (an audit event's canonical JSON),
  ``ledger_apply_counters_v1`` (counter updates in account id order),
  ``ledger_account_refusal_v1`` (why an account may not be spent from or paid
  into), ``ledger_settle_v1`` (capture and void).

SQLite keeps the Python path; there this revision does nothing.

This file is frozen once committed: it carries its own SQL text. A change to a
function is a new migration that runs ``CREATE OR REPLACE FUNCTION`` with the
whole new text (and whose downgrade restores this text); a change of a
function's arguments or result is a new name (``_v2``) that the code switches to.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 17:00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Python's json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# of the event credits.ledger.journal.audit_transfers records: keys in code point
# order, to_json escapes strings exactly as json.dumps does without ensure_ascii.
EVENT_JSON = r"""
CREATE FUNCTION ledger_event_json_v1(t ledger_transfers, p_at text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN '{"actor":' || to_json(t.actor::text)::text
    || ',"at":' || to_json(p_at)::text
    || ',"data":{"amount":' || t.amount::text
    || ',"credit_account_id":' || t.credit_account_id::text
    || ',"currency":' || to_json(t.currency::text)::text
    || ',"debit_account_id":' || t.debit_account_id::text
    || ',"id":' || t.id::text
    || ',"idempotency_key":' || to_json(t.idempotency_key::text)::text
    || ',"kind":' || to_json(t.kind::text)::text
    || ',"part":' || t.part::text
    || ',"pending":' || CASE WHEN t.pending THEN 'true' ELSE 'false' END
    || ',"pending_id":' || COALESCE(t.pending_id::text, 'null')
    || ',"reason":' || COALESCE(to_json(t.reason::text)::text, 'null')
    || ',"reference":' || COALESCE(to_json(t.reference::text)::text, 'null')
    || '},"subject":{"id":' || to_json(t.id::text)::text
    || ',"type":"ledger_transfer"},"type":' || to_json('ledger.' || t.kind)::text
    || '}';
END
$$
"""

# Appends a transfer and its audit event; returns the row as written.
APPEND = r"""
CREATE FUNCTION ledger_append_v1(
    p_key text, p_part integer, p_digest text, p_kind text, p_currency text,
    p_debit bigint, p_credit bigint, p_amount bigint, p_pending boolean,
    p_pending_id bigint, p_reference text, p_actor text, p_reason text,
    p_now timestamptz, p_at text
) RETURNS ledger_transfers
LANGUAGE plpgsql AS $$
DECLARE
    t ledger_transfers;
    doc text;
BEGIN
    INSERT INTO ledger_transfers (
        idempotency_key, part, request_hash, kind, currency, debit_account_id,
        credit_account_id, amount, pending, pending_id, reference, actor, reason, created_at
    ) VALUES (
        p_key, p_part, p_digest, p_kind, p_currency, p_debit, p_credit, p_amount,
        p_pending, p_pending_id, p_reference, p_actor, p_reason, p_now
    ) RETURNING * INTO t;
    doc := ledger_event_json_v1(t, p_at);
    INSERT INTO audit_events (
        event_type, actor, subject_type, subject_id, occurred_at, canonical_json, leaf_hash
    ) VALUES (
        'ledger.' || p_kind, p_actor, 'ledger_transfer', t.id::text, p_now, doc,
        encode(sha256('\x00'::bytea || convert_to(doc, 'UTF8')), 'hex')
    );
    RETURN t;
END
$$
"""

# One conditional UPDATE per account in id order; the WHERE clause repeats the
# overdraft rule (credits.ledger.journal._APPLY_COUNTERS). A guard that trips
# after the checks is a bug: raised, so the whole transaction aborts.
APPLY_COUNTERS = r"""
CREATE FUNCTION ledger_apply_counters_v1(
    p_ids bigint[], p_debits_pending bigint[], p_debits_posted bigint[],
    p_credits_pending bigint[], p_credits_posted bigint[]
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT u.id, sum(u.dpe)::bigint AS dpe, sum(u.dpo)::bigint AS dpo,
            sum(u.cpe)::bigint AS cpe, sum(u.cpo)::bigint AS cpo
        FROM unnest(p_ids, p_debits_pending, p_debits_posted, p_credits_pending, p_credits_posted)
            AS u(id, dpe, dpo, cpe, cpo)
        GROUP BY u.id ORDER BY u.id
    LOOP
        UPDATE ledger_accounts a SET
            debits_pending = a.debits_pending + c.dpe,
            debits_posted = a.debits_posted + c.dpo,
            credits_pending = a.credits_pending + c.cpe,
            credits_posted = a.credits_posted + c.cpo
        WHERE a.id = c.id
          AND (NOT a.no_overdraft
               OR a.credits_posted + c.cpo - a.debits_posted - c.dpo
                  - a.debits_pending - c.dpe >= 0);
        IF NOT FOUND THEN
            RAISE EXCEPTION 'an overdraft guard refused the update of account %', c.id
                USING ERRCODE = 'LDG99';
        END IF;
    END LOOP;
END
$$
"""

# Why an account may not be spent from (p_spend) or paid into, or NULL:
# credits.ledger.journal.require_spendable and require_receivable.
ACCOUNT_REFUSAL = r"""
CREATE FUNCTION ledger_account_refusal_v1(
    a ledger_accounts, p_now timestamptz, p_spend boolean
) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF a.status <> 'active' THEN
        RETURN jsonb_build_object('refusal', 'not_active', 'why', 'status',
                                  'account_id', a.id, 'status', a.status);
    ELSIF a.expires_at IS NOT NULL AND a.expires_at <= p_now THEN
        RETURN jsonb_build_object('refusal', 'not_active', 'why', 'expired', 'account_id', a.id,
                                  'at_us', (extract(epoch FROM a.expires_at) * 1000000)::bigint);
    ELSIF p_spend AND a.starts_at IS NOT NULL AND a.starts_at > p_now THEN
        RETURN jsonb_build_object('refusal', 'not_active', 'why', 'starts', 'account_id', a.id,
                                  'at_us', (extract(epoch FROM a.starts_at) * 1000000)::bigint);
    END IF;
    RETURN NULL;
END
$$
"""

# Where a hold's captured credits go (credits.ledger.holds._check_sink).
SINK_REFUSAL = r"""
CREATE FUNCTION ledger_sink_refusal_v1(
    s ledger_accounts, p_currency text, p_project_id bigint
) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF s.kind <> 'usage_sink' THEN
        RETURN jsonb_build_object('refusal', 'not_a_sink', 'account_id', s.id, 'kind', s.kind);
    ELSIF s.currency <> p_currency THEN
        RETURN jsonb_build_object('refusal', 'currency_mismatch', 'account_id', s.id,
                                  'holds', s.currency, 'wanted', p_currency);
    ELSIF s.project_id IS NOT NULL AND s.project_id IS DISTINCT FROM p_project_id THEN
        RETURN jsonb_build_object('refusal', 'foreign_sink', 'account_id', s.id);
    END IF;
    RETURN NULL;
END
$$
"""

# The first request under p_key: 'new', 'reused' (another request) or 'replay'.
KEY_STATE = r"""
CREATE FUNCTION ledger_key_state_v1(p_key text, p_digest text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    stored text;
BEGIN
    SELECT t.request_hash INTO stored FROM ledger_transfers t
        WHERE t.idempotency_key = p_key ORDER BY t.part LIMIT 1;
    IF NOT FOUND THEN
        RETURN 'new';
    END IF;
    RETURN CASE WHEN stored = p_digest THEN 'replay' ELSE 'reused' END;
END
$$
"""

PLACE_HOLD = r"""
CREATE FUNCTION ledger_place_hold_v1(
    p_key text, p_digest text, p_currency text, p_amount bigint, p_project_id bigint,
    p_account_id bigint, p_sink_account_id bigint, p_reference text, p_actor text,
    p_now timestamptz, p_at text
) RETURNS TABLE (
    transfer_id bigint, part integer, account_id bigint, amount bigint, captured bigint,
    voided bigint, status text, replayed boolean, refusal jsonb
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r ledger_accounts;
    sink ledger_accounts;
    account ledger_accounts;
    locked bigint[] := '{}';
    sink_id bigint := p_sink_account_id;
    own_sink_code text := 'project:' || p_project_id || ':usage:' || p_currency;
    why jsonb;
    total bigint := 0;
    left_ bigint := p_amount;
    take bigint;
    spendable bigint[] := '{}';
    avails bigint[] := '{}';
    ids bigint[] := '{}';
    takes bigint[] := '{}';
    n integer;
    t ledger_transfers;
BEGIN
    <<checks>>
    BEGIN
        IF p_account_id IS NULL THEN
            -- The project's accounts in the currency and an explicit sink, in id order
            -- (credits.ledger.holds._lock_project).
            FOR r IN
                SELECT * FROM ledger_accounts a
                WHERE (a.project_id = p_project_id AND a.currency = p_currency)
                   OR a.id = p_sink_account_id
                ORDER BY a.id FOR UPDATE
            LOOP
                locked := locked || r.id;
                IF r.id = p_sink_account_id OR (p_sink_account_id IS NULL
                                                AND r.code = own_sink_code) THEN
                    sink := r;
                END IF;
            END LOOP;
            IF p_sink_account_id IS NOT NULL AND sink.id IS NULL THEN
                why := jsonb_build_object('refusal', 'account_not_found',
                                          'account_id', p_sink_account_id);
                EXIT checks;
            END IF;
            IF sink.id IS NULL THEN
                -- The shared sink is read, never locked: every project without a sink of
                -- its own would queue on it.
                SELECT * INTO STRICT sink FROM ledger_accounts a
                WHERE a.code = 'system:usage_sink:' || p_currency;
            END IF;
            why := ledger_sink_refusal_v1(sink, p_currency, p_project_id);
        ELSE
            -- One allocation and its sink, in id order (credits.ledger.holds._lock_account).
            IF sink_id IS NULL THEN
                SELECT s.id INTO sink_id FROM ledger_accounts a
                    JOIN ledger_accounts s
                        ON s.code = 'project:' || a.project_id || ':usage:' || p_currency
                    WHERE a.id = p_account_id;
            END IF;
            IF sink_id IS NULL THEN
                SELECT a.id INTO STRICT sink_id FROM ledger_accounts a
                WHERE a.code = 'system:usage_sink:' || p_currency;
            END IF;
            FOR r IN
                SELECT * FROM ledger_accounts a WHERE a.id IN (p_account_id, sink_id)
                ORDER BY a.id FOR UPDATE
            LOOP
                locked := locked || r.id;
                IF r.id = p_account_id THEN
                    account := r;
                END IF;
                IF r.id = sink_id THEN
                    sink := r;
                END IF;
            END LOOP;
            SELECT min(x) INTO take FROM unnest(ARRAY[p_account_id, sink_id]) x
                WHERE NOT x = ANY (locked);
            IF take IS NOT NULL THEN
                why := jsonb_build_object('refusal', 'account_not_found', 'account_id', take);
                EXIT checks;
            END IF;
            IF account.kind <> 'allocation' THEN
                why := jsonb_build_object('refusal', 'not_an_allocation',
                                          'account_id', account.id, 'kind', account.kind);
            ELSIF account.currency <> p_currency THEN
                why := jsonb_build_object('refusal', 'currency_mismatch',
                                          'account_id', account.id, 'holds', account.currency,
                                          'wanted', p_currency);
            ELSE
                why := ledger_sink_refusal_v1(sink, p_currency, account.project_id);
            END IF;
        END IF;
        EXIT checks WHEN why IS NOT NULL;
        -- The key is looked up once the locks are held: a request with the same key
        -- may have committed while this one waited for them.
        CASE ledger_key_state_v1(p_key, p_digest)
            WHEN 'reused' THEN
                why := jsonb_build_object('refusal', 'key_reused', 'key', p_key);
                EXIT checks;
            WHEN 'replay' THEN
                RETURN QUERY SELECT h.transfer_id, h.part, h.account_id, h.amount, h.captured,
                    h.voided, h.status::text, true, NULL::jsonb
                    FROM ledger_hold_parts h WHERE h.hold_key = p_key ORDER BY h.part;
                RETURN;
            ELSE
                NULL;
        END CASE;
        IF p_account_id IS NOT NULL THEN
            why := ledger_account_refusal_v1(account, p_now, true);
            EXIT checks WHEN why IS NOT NULL;
        END IF;
        -- The locked rows that may be spent from, soonest-expiring first, no end date
        -- last, then by id (credits.ledger.holds._spend_order), with what each has left.
        FOR r IN
            SELECT * FROM ledger_accounts a
            WHERE a.id = ANY (locked) AND a.id <> sink.id
              AND (p_account_id IS NOT NULL OR a.project_id = p_project_id)
              AND a.kind = 'allocation' AND a.status = 'active'
              AND (a.starts_at IS NULL OR a.starts_at <= p_now)
              AND (a.expires_at IS NULL OR a.expires_at > p_now)
            ORDER BY a.expires_at IS NULL, a.expires_at, a.id
        LOOP
            take := greatest(r.credits_posted - r.debits_posted - r.debits_pending, 0);
            spendable := spendable || r.id;
            avails := avails || take;
            total := total + take;
        END LOOP;
        IF total < p_amount THEN
            why := jsonb_build_object('refusal', 'insufficient', 'required', p_amount,
                                      'available', total, 'currency', p_currency);
        END IF;
    END checks;
    IF why IS NOT NULL THEN
        RETURN QUERY SELECT NULL::bigint, NULL::integer, NULL::bigint, NULL::bigint,
            NULL::bigint, NULL::bigint, NULL::text, false, why;
        RETURN;
    END IF;
    -- All or nothing: the parts cover p_amount, each source as far as it goes.
    FOR i IN 1 .. cardinality(spendable) LOOP
        take := least(left_, avails[i]);
        IF take > 0 THEN
            ids := ids || spendable[i];
            takes := takes || take;
            left_ := left_ - take;
        END IF;
        EXIT WHEN left_ = 0;
    END LOOP;
    -- The sources are locked already, so the order of these updates takes no lock
    -- but the shared sink's (as on the Python path); no GROUP BY query is needed.
    n := cardinality(ids);
    FOR i IN 1 .. n LOOP
        UPDATE ledger_accounts a SET debits_pending = a.debits_pending + takes[i]
            WHERE a.id = ids[i] AND (NOT a.no_overdraft OR
                a.credits_posted - a.debits_posted - a.debits_pending - takes[i] >= 0);
        IF NOT FOUND THEN
            RAISE EXCEPTION 'an overdraft guard refused the update of account %', ids[i]
                USING ERRCODE = 'LDG99';
        END IF;
    END LOOP;
    UPDATE ledger_accounts a SET credits_pending = a.credits_pending + p_amount
        WHERE a.id = sink.id;
    FOR i IN 1 .. n LOOP
        t := ledger_append_v1(p_key, i - 1, p_digest, 'hold', p_currency, ids[i], sink.id,
                              takes[i], true, NULL, p_reference, p_actor, NULL, p_now, p_at);
        INSERT INTO ledger_hold_parts (transfer_id, hold_key, part, account_id, amount,
                                       captured, voided, status)
            VALUES (t.id, p_key, i - 1, ids[i], takes[i], 0, 0, 'open');
        RETURN QUERY SELECT t.id, i - 1, ids[i], takes[i], 0::bigint, 0::bigint, 'open',
            false, NULL::jsonb;
    END LOOP;
END
$$
"""

# The transfer columns every settle and transfer function returns (TRANSFER_COLUMNS
# in their text).
TRANSFER_COLUMNS = """
    id bigint, idempotency_key text, part integer, kind text, currency text,
    debit_account_id bigint, credit_account_id bigint, amount bigint, pending boolean,
    pending_id bigint, reference text, actor text, reason text, created_at timestamptz,
    replayed boolean, refusal jsonb
"""

# The one row a settle or transfer function answers a refusal with.
REFUSED = r"""
CREATE FUNCTION ledger_refused_v1(p_refusal jsonb) RETURNS TABLE (TRANSFER_COLUMNS)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN QUERY SELECT NULL::bigint, NULL::text, NULL::integer, NULL::text, NULL::text,
        NULL::bigint, NULL::bigint, NULL::bigint, NULL::boolean, NULL::bigint, NULL::text,
        NULL::text, NULL::text, NULL::timestamptz, false, p_refusal;
END
$$
"""

# The transfers an earlier request under p_key wrote, as a replay.
REPLAYED = r"""
CREATE FUNCTION ledger_replayed_v1(p_key text) RETURNS TABLE (TRANSFER_COLUMNS)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY SELECT t.id, t.idempotency_key::text, t.part, t.kind::text, t.currency::text,
    t.debit_account_id, t.credit_account_id, t.amount, t.pending, t.pending_id,
    t.reference::text, t.actor::text, t.reason, t.created_at, true, NULL::jsonb
    FROM ledger_transfers t WHERE t.idempotency_key = p_key ORDER BY t.part;
END
$$
"""

# Capture (p_amount of what is left, parts in order) or void (all that is left):
# credits.ledger.settle.capture, void_hold and _settle.
SETTLE = r"""
CREATE FUNCTION ledger_settle_v1(
    p_kind text, p_key text, p_digest text, p_hold_key text, p_amount bigint, p_note text,
    p_actor text, p_now timestamptz, p_at text
) RETURNS TABLE (TRANSFER_COLUMNS)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    h record;
    found_parts integer := 0;
    any_voided boolean := false;
    remaining_ bigint := 0;
    left_ bigint := p_amount;
    take bigint;
    part_ids bigint[] := '{}';
    debits bigint[] := '{}';
    credits bigint[] := '{}';
    takes bigint[] := '{}';
    negs bigint[] := '{}';
    zeros bigint[] := '{}';
    posteds bigint[] := '{}';
    currencies text[] := '{}';
    refused jsonb;
    t ledger_transfers;
    i integer;
BEGIN
    FOR h IN
        SELECT p.transfer_id AS part_id, p.amount - p.captured - p.voided AS part_left,
            p.status AS part_status, x.debit_account_id AS debit,
            x.credit_account_id AS credit, x.currency::text AS part_currency
        FROM ledger_hold_parts p JOIN ledger_transfers x ON x.id = p.transfer_id
        WHERE p.hold_key = p_hold_key ORDER BY p.part FOR UPDATE OF p
    LOOP
        found_parts := found_parts + 1;
        IF h.part_status = 'voided' THEN
            any_voided := true;
        ELSIF h.part_status = 'open' THEN
            remaining_ := remaining_ + h.part_left;
            IF p_kind = 'capture' THEN
                take := least(left_, h.part_left);
                left_ := left_ - take;
            ELSE
                take := h.part_left;
            END IF;
            IF take > 0 THEN
                part_ids := part_ids || h.part_id;
                debits := debits || h.debit;
                credits := credits || h.credit;
                takes := takes || take;
                negs := negs || -take;
                zeros := zeros || 0::bigint;
                posteds := posteds || CASE WHEN p_kind = 'capture' THEN take ELSE 0 END;
                currencies := currencies || h.part_currency;
            END IF;
        END IF;
    END LOOP;
    IF found_parts = 0 THEN
        refused := jsonb_build_object('refusal', 'hold_not_found', 'hold_key', p_hold_key);
    ELSE
        CASE ledger_key_state_v1(p_key, p_digest)
            WHEN 'reused' THEN
                refused := jsonb_build_object('refusal', 'key_reused', 'key', p_key);
            WHEN 'replay' THEN
                RETURN QUERY SELECT * FROM ledger_replayed_v1(p_key);
                RETURN;
            ELSE
                IF remaining_ = 0 THEN
                    refused := jsonb_build_object('refusal', 'hold_closed', 'hold_key', p_hold_key,
                                                  'voided', any_voided);
                ELSIF p_kind = 'capture' AND p_amount > remaining_ THEN
                    refused := jsonb_build_object('refusal', 'capture_exceeds', 'hold_key',
                        p_hold_key, 'requested', p_amount, 'remaining', remaining_);
                END IF;
        END CASE;
    END IF;
    IF refused IS NOT NULL THEN
        RETURN QUERY SELECT * FROM ledger_refused_v1(refused);
        RETURN;
    END IF;
    FOR i IN 1 .. cardinality(part_ids) LOOP
        UPDATE ledger_hold_parts p SET
            captured = p.captured + posteds[i],
            voided = p.voided + takes[i] - posteds[i],
            status = CASE
                WHEN p_kind = 'void' THEN 'voided'
                WHEN p.captured + posteds[i] = p.amount THEN 'captured'
                ELSE 'open' END
            WHERE p.transfer_id = part_ids[i];
    END LOOP;
    PERFORM ledger_apply_counters_v1(
        debits || credits, negs || zeros, posteds || zeros, zeros || negs, zeros || posteds);
    FOR i IN 1 .. cardinality(part_ids) LOOP
        t := ledger_append_v1(
            p_key, i - 1, p_digest, p_kind, currencies[i], debits[i], credits[i], takes[i],
            false, part_ids[i], CASE WHEN p_kind = 'capture' THEN p_note END, p_actor,
            CASE WHEN p_kind = 'void' THEN p_note END, p_now, p_at);
        RETURN QUERY SELECT t.id, t.idempotency_key::text, t.part, t.kind::text,
            t.currency::text, t.debit_account_id, t.credit_account_id, t.amount, t.pending,
            t.pending_id, t.reference::text, t.actor::text, t.reason, t.created_at, false,
            NULL::jsonb;
    END LOOP;
END
$$
"""

CAPTURE = r"""
CREATE FUNCTION ledger_capture_v1(
    p_key text, p_digest text, p_hold_key text, p_amount bigint, p_reference text,
    p_actor text, p_now timestamptz, p_at text
) RETURNS TABLE (TRANSFER_COLUMNS)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM ledger_settle_v1('capture', p_key, p_digest, p_hold_key,
                                                p_amount, p_reference, p_actor, p_now, p_at);
END
$$
"""

VOID = r"""
CREATE FUNCTION ledger_void_v1(
    p_key text, p_digest text, p_hold_key text, p_reason text, p_actor text,
    p_now timestamptz, p_at text
) RETURNS TABLE (TRANSFER_COLUMNS)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM ledger_settle_v1('void', p_key, p_digest, p_hold_key, NULL,
                                                p_reason, p_actor, p_now, p_at);
END
$$
"""

# A posted transfer between two accounts of one currency: credits.ledger.service.grant.
TRANSFER = r"""
CREATE FUNCTION ledger_transfer_v1(
    p_key text, p_digest text, p_kind text, p_from bigint, p_to bigint, p_amount bigint,
    p_reason text, p_reference text, p_actor text, p_now timestamptz, p_at text
) RETURNS TABLE (TRANSFER_COLUMNS)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r ledger_accounts;
    source ledger_accounts;
    target ledger_accounts;
    missing bigint;
    refused jsonb;
    t ledger_transfers;
BEGIN
    FOR r IN
        SELECT * FROM ledger_accounts a WHERE a.id IN (p_from, p_to) ORDER BY a.id FOR UPDATE
    LOOP
        IF r.id = p_from THEN source := r; ELSE target := r; END IF;
    END LOOP;
    SELECT min(x) INTO missing FROM unnest(ARRAY[p_from, p_to]) x
        WHERE x IS DISTINCT FROM source.id AND x IS DISTINCT FROM target.id;
    IF missing IS NOT NULL THEN
        refused := jsonb_build_object('refusal', 'account_not_found', 'account_id', missing);
    ELSE
        CASE ledger_key_state_v1(p_key, p_digest)
            WHEN 'reused' THEN
                refused := jsonb_build_object('refusal', 'key_reused', 'key', p_key);
            WHEN 'replay' THEN
                RETURN QUERY SELECT * FROM ledger_replayed_v1(p_key);
                RETURN;
            ELSE
                IF target.currency <> source.currency THEN
                    refused := jsonb_build_object('refusal', 'currency_mismatch',
                        'account_id', target.id, 'holds', target.currency,
                        'wanted', source.currency);
                ELSE
                    refused := COALESCE(
                        ledger_account_refusal_v1(source, p_now, true),
                        ledger_account_refusal_v1(target, p_now, false));
                END IF;
                IF refused IS NULL AND source.no_overdraft
                   AND source.credits_posted - source.debits_posted - source.debits_pending
                       < p_amount THEN
                    refused := jsonb_build_object('refusal', 'insufficient',
                        'account_id', source.id, 'required', p_amount, 'currency', source.currency,
                        'available',
                        source.credits_posted - source.debits_posted - source.debits_pending);
                END IF;
        END CASE;
    END IF;
    IF refused IS NOT NULL THEN
        RETURN QUERY SELECT * FROM ledger_refused_v1(refused);
        RETURN;
    END IF;
    -- Both accounts are locked already: two plain updates, the guard repeated on the payer.
    UPDATE ledger_accounts a SET debits_posted = a.debits_posted + p_amount
        WHERE a.id = p_from AND (NOT a.no_overdraft OR
            a.credits_posted - a.debits_posted - a.debits_pending - p_amount >= 0);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'an overdraft guard refused the update of account %', p_from
            USING ERRCODE = 'LDG99';
    END IF;
    UPDATE ledger_accounts a SET credits_posted = a.credits_posted + p_amount
        WHERE a.id = p_to;
    t := ledger_append_v1(p_key, 0, p_digest, p_kind, source.currency, p_from, p_to, p_amount,
                          false, NULL, p_reference, p_actor, p_reason, p_now, p_at);
    RETURN QUERY SELECT t.id, t.idempotency_key::text, t.part, t.kind::text, t.currency::text,
        t.debit_account_id, t.credit_account_id, t.amount, t.pending, t.pending_id,
        t.reference::text, t.actor::text, t.reason, t.created_at, false, NULL::jsonb;
END
$$
"""

# In creation order; dropped in reverse.
FUNCTIONS = (
    ("ledger_event_json_v1(ledger_transfers, text)", EVENT_JSON),
    (
        "ledger_append_v1(text, integer, text, text, text, bigint, bigint, bigint, boolean,"
        " bigint, text, text, text, timestamptz, text)",
        APPEND,
    ),
    ("ledger_apply_counters_v1(bigint[], bigint[], bigint[], bigint[], bigint[])", APPLY_COUNTERS),
    ("ledger_account_refusal_v1(ledger_accounts, timestamptz, boolean)", ACCOUNT_REFUSAL),
    ("ledger_sink_refusal_v1(ledger_accounts, text, bigint)", SINK_REFUSAL),
    ("ledger_key_state_v1(text, text)", KEY_STATE),
    (
        "ledger_place_hold_v1(text, text, text, bigint, bigint, bigint, bigint, text, text,"
        " timestamptz, text)",
        PLACE_HOLD,
    ),
    ("ledger_refused_v1(jsonb)", REFUSED),
    ("ledger_replayed_v1(text)", REPLAYED),
    (
        "ledger_settle_v1(text, text, text, text, bigint, text, text, timestamptz, text)",
        SETTLE,
    ),
    ("ledger_capture_v1(text, text, text, bigint, text, text, timestamptz, text)", CAPTURE),
    ("ledger_void_v1(text, text, text, text, text, timestamptz, text)", VOID),
    (
        "ledger_transfer_v1(text, text, text, bigint, bigint, bigint, text, text, text,"
        " timestamptz, text)",
        TRANSFER,
    ),
)


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for signature, definition in FUNCTIONS:
        op.execute(definition.replace("TRANSFER_COLUMNS", TRANSFER_COLUMNS))
        op.execute(f"COMMENT ON FUNCTION {signature} IS 'credits ledger, migration 0017'")


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for signature, _ in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
