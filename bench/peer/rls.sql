-- Row-level security for the second PostGraphile peer of bench.peer: Linkgate's account
-- visibility (auth/policy.py) as PostgreSQL policies, so that PostGraphile answers the
-- dashboard with checks on. Benchmark only; applied by bench/peer.py to its throw-away
-- database after seeding, with PEER_ROLE replaced by the run's own role (a NOLOGIN role that
-- bench.peer creates before and drops after, since roles belong to the whole server).
--
-- Who is asking: PostGraphile (--jwt-secret) verifies the gateway's own bearer token (HS256,
-- the same secret and issuer) and hands its claims to PostgreSQL as transaction settings:
-- jwt.claims.sub (the user), jwt.claims.ver (the user's token version) and jwt.claims.sid
-- (the sign-in session). Like auth/principals.py, the viewer is that user only while the user
-- exists, the token version is current and the session is neither revoked nor expired;
-- otherwise the viewer is nobody and sees no row (the gateway answers an error instead).
--
-- What a viewer holds (auth/policy.py, DESIGN §1):
--     effective(U, A) = direct(U, A) ∪ ⋃ over groups G containing A: direct(U, head(G)) ∩ scope(G.kind)
-- direct(U, A) is every permission when U owns A, else the permissions of U's membership on A;
-- scope(kind) is auth.permissions.LINK_SCOPES; staff hold STAFF_PERMISSIONS on every account.
-- An account is visible when the viewer holds any permission on it.
--
-- The policies, per table the dashboard and the account header read:
--   accounts               visible accounts
--   credit_ledger_entries  accounts with CREDITS_READ         invoices  payer with INVOICES_READ
--   tickets                accounts with TICKETS_READ         services  accounts with SERVICES_READ
--   contacts               accounts with CONTACTS_READ
--   invoice_lines, ticket_messages: those of a visible invoice / ticket
--   link_groups, link_members: groups with at least one visible member (as Account.linkGroups)
--   users                  the viewer
-- bench/peer.py checks that the vocabulary tables below match auth/permissions.py.

CREATE SCHEMA peer_private;  -- not exposed by PostGraphile (--schema public)

-- ------------------------------------------------------------------ the vocabulary

CREATE TABLE peer_private.permissions (permission text PRIMARY KEY, position int NOT NULL);
INSERT INTO peer_private.permissions VALUES
  ('INVOICES_READ', 1), ('CREDITS_READ', 2), ('CREDITS_PURCHASE', 3), ('CREDITS_TRANSFER', 4),
  ('BILLING_MANAGE', 5), ('INVOICES_PAY', 6), ('SERVICES_READ', 7), ('TICKETS_READ', 8),
  ('TICKETS_WRITE', 9), ('PROFILE_MANAGE', 10), ('CONTACTS_READ', 11), ('CONTACTS_MANAGE', 12),
  ('LINKS_MANAGE', 13), ('EMAILS_READ', 14), ('AUDIT_READ', 15);

-- What reaches the members of a group from its head (LINK_SCOPES).
CREATE TABLE peer_private.link_scopes (kind text, permission text, PRIMARY KEY (kind, permission));
INSERT INTO peer_private.link_scopes VALUES
  ('MANAGEMENT', 'SERVICES_READ'), ('MANAGEMENT', 'TICKETS_READ'), ('MANAGEMENT', 'TICKETS_WRITE'),
  ('MANAGEMENT', 'PROFILE_MANAGE'), ('MANAGEMENT', 'CONTACTS_READ'), ('MANAGEMENT', 'EMAILS_READ'),
  ('BILLING', 'INVOICES_READ'), ('BILLING', 'CREDITS_READ'), ('BILLING', 'CREDITS_PURCHASE'),
  ('BILLING', 'CREDITS_TRANSFER'), ('BILLING', 'BILLING_MANAGE'), ('BILLING', 'INVOICES_PAY');

-- What staff hold on every account (STAFF_PERMISSIONS).
CREATE TABLE peer_private.staff_permissions (role text, permission text, PRIMARY KEY (role, permission));
INSERT INTO peer_private.staff_permissions
  SELECT 'SUPPORT', unnest(ARRAY['SERVICES_READ', 'TICKETS_READ', 'TICKETS_WRITE', 'CONTACTS_READ',
                                 'EMAILS_READ', 'AUDIT_READ'])
  UNION ALL
  SELECT 'BILLING', unnest(ARRAY['INVOICES_READ', 'CREDITS_READ', 'CREDITS_PURCHASE', 'CREDITS_TRANSFER',
                                 'BILLING_MANAGE', 'INVOICES_PAY', 'EMAILS_READ', 'AUDIT_READ'])
  UNION ALL
  SELECT 'ADMIN', permission FROM peer_private.permissions;

-- ------------------------------------------------------------------ who is asking

-- The functions policies call run many times per request (once per table per statement, and
-- Account.viewerPermissions once per account): PL/pgSQL keeps their plans for the session,
-- where an SQL function that is not inlined would be planned again at every call. They are
-- SECURITY DEFINER so that what they read is not itself filtered (a policy reading its own
-- table would recurse), with a fixed search_path as such functions must have.

-- The signed-in user, or NULL: the token's user at the token's version, in a live session
-- (auth.principals.principal_for, the same one statement).
CREATE FUNCTION peer_private.viewer_id() RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  RETURN (
    SELECT u.id
    FROM users u
    JOIN user_sessions s ON s.id = nullif(current_setting('jwt.claims.sid', true), '')::bigint
                        AND s.user_id = u.id
    WHERE u.id = nullif(current_setting('jwt.claims.sub', true), '')::bigint
      AND u.token_version = nullif(current_setting('jwt.claims.ver', true), '')::int
      AND s.revoked_at IS NULL AND s.expires_at > now());
END $$;

-- direct(U, A): the owner holds every permission; a membership what it lists (names no longer
-- in the vocabulary grant nothing, as auth.permissions.parse_permissions).
CREATE FUNCTION peer_private.direct_permissions_on(viewer bigint, account bigint)
RETURNS SETOF text
LANGUAGE sql STABLE AS $$
  SELECT p.permission FROM peer_private.permissions p
  WHERE EXISTS (SELECT 1 FROM accounts a WHERE a.id = account AND a.owner_id = viewer)
  UNION
  SELECT granted.name
  FROM memberships m CROSS JOIN LATERAL json_array_elements_text(m.permissions) AS granted(name)
  WHERE m.user_id = viewer AND m.account_id = account
    AND granted.name IN (SELECT permission FROM peer_private.permissions)
$$;

-- The permissions a staff viewer holds on every account (none for customers).
CREATE FUNCTION peer_private.staff_permissions()
RETURNS SETOF text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  RETURN QUERY
    SELECT staff.permission
    FROM users u JOIN peer_private.staff_permissions staff ON staff.role = u.staff_role
    WHERE u.id = peer_private.viewer_id();
END $$;

-- ------------------------------------------------------------------ what policies ask

-- The accounts on which the viewer holds ``wanted``; with NULL, on which it holds anything
-- (the visible accounts): effective(U, ·), direct rights and what flows from group heads to
-- their members (auth.policy.compute_effective), as account ids only. Policies use it as
-- ``x IN (SELECT …)``: PostgreSQL computes the set once per statement and probes it by hash.
CREATE FUNCTION peer_private.accounts_with(wanted text)
RETURNS SETOF bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  viewer bigint := peer_private.viewer_id();
BEGIN
  RETURN QUERY
    WITH direct AS (  -- granted NULL: the owner, who holds everything
      SELECT a.id AS account_id, NULL::text[] AS granted FROM accounts a WHERE a.owner_id = viewer
      UNION ALL
      SELECT m.account_id, ARRAY(SELECT json_array_elements_text(m.permissions)
                                 INTERSECT SELECT permission FROM peer_private.permissions)
      FROM memberships m WHERE m.user_id = viewer
    )
    SELECT direct.account_id FROM direct
    WHERE direct.granted IS NULL OR (wanted IS NULL AND cardinality(direct.granted) > 0)
       OR wanted = ANY (direct.granted)
    UNION
    SELECT member.account_id
    FROM direct
    JOIN link_members head ON head.account_id = direct.account_id AND head.is_head
    JOIN link_members member ON member.group_id = head.group_id
                            AND member.account_id <> head.account_id
    WHERE EXISTS (SELECT 1 FROM peer_private.link_scopes scope
                  WHERE scope.kind = head.kind
                    AND (wanted IS NULL OR scope.permission = wanted)
                    AND (direct.granted IS NULL OR scope.permission = ANY (direct.granted)));
END $$;

-- Whether the viewer is staff holding ``wanted`` everywhere (NULL: any permission).
CREATE FUNCTION peer_private.staff_holds(wanted text)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM peer_private.staff_permissions() p WHERE wanted IS NULL OR p = wanted);
END $$;

-- Link groups with at least one member the viewer can see: Account.linkGroups shows the
-- groups of a visible account, with all their members.
CREATE FUNCTION peer_private.visible_groups()
RETURNS SETOF bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  IF peer_private.staff_holds(NULL) THEN
    RETURN QUERY SELECT id FROM link_groups;
  ELSE
    RETURN QUERY
      SELECT DISTINCT m.group_id FROM link_members m
      WHERE m.account_id IN (SELECT peer_private.accounts_with(NULL));
  END IF;
END $$;

-- ------------------------------------------------------------------ computed columns

-- Account.viewerPermissions, as the gateway's: the viewer's permissions on this one account,
-- in declaration order (all of them for the owner; a membership's; what flows from the heads
-- of its groups; staff's). One query with every part inlined, planned once per session.
CREATE FUNCTION public.accounts_viewer_permissions(a accounts)
RETURNS text[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  viewer bigint := peer_private.viewer_id();
BEGIN
  RETURN (
    SELECT coalesce(array_agg(p.permission ORDER BY p.position), '{}')
    FROM peer_private.permissions p
    WHERE a.owner_id = viewer
       OR p.permission IN (
         SELECT granted.name
         FROM memberships m CROSS JOIN LATERAL json_array_elements_text(m.permissions) AS granted(name)
         WHERE m.user_id = viewer AND m.account_id = a.id
         UNION ALL
         SELECT flowing.permission
         FROM link_members member
         JOIN link_members head ON head.group_id = member.group_id AND head.is_head
                               AND head.account_id <> member.account_id
         CROSS JOIN LATERAL peer_private.direct_permissions_on(viewer, head.account_id) AS flowing(permission)
         JOIN peer_private.link_scopes scope ON scope.kind = head.kind
                                            AND scope.permission = flowing.permission
         WHERE member.account_id = a.id
         UNION ALL
         SELECT staff.permission
         FROM users u JOIN peer_private.staff_permissions staff ON staff.role = u.staff_role
         WHERE u.id = viewer));
END $$;

-- Account.viewerIsOwner.
CREATE FUNCTION public.accounts_viewer_is_owner(a accounts)
RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT a.owner_id IS NOT DISTINCT FROM peer_private.viewer_id()
$$;

-- ------------------------------------------------------------------ the policies

ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY peer_visible ON accounts FOR SELECT USING (
  (SELECT peer_private.staff_holds(NULL)) OR id IN (SELECT peer_private.accounts_with(NULL)));

ALTER TABLE credit_ledger_entries ENABLE ROW LEVEL SECURITY;
CREATE POLICY peer_visible ON credit_ledger_entries FOR SELECT USING (
  (SELECT peer_private.staff_holds('CREDITS_READ'))
  OR account_id IN (SELECT peer_private.accounts_with('CREDITS_READ')));

ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY peer_visible ON invoices FOR SELECT USING (
  (SELECT peer_private.staff_holds('INVOICES_READ'))
  OR payer_account_id IN (SELECT peer_private.accounts_with('INVOICES_READ')));

ALTER TABLE invoice_lines ENABLE ROW LEVEL SECURITY;
CREATE POLICY peer_visible ON invoice_lines FOR SELECT USING (
  EXISTS (SELECT 1 FROM invoices i WHERE i.id = invoice_id));  -- invoices' own policy applies

ALTER TABLE tickets ENABLE ROW LEVEL SECURITY;
CREATE POLICY peer_visible ON tickets FOR SELECT USING (
  (SELECT peer_private.staff_holds('TICKETS_READ'))
  OR account_id IN (SELECT peer_private.accounts_with('TICKETS_READ')));

ALTER TABLE ticket_messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY peer_visible ON ticket_messages FOR SELECT USING (
  EXISTS (SELECT 1 FROM tickets t WHERE t.id = ticket_id));  -- tickets' own policy applies

ALTER TABLE services ENABLE ROW LEVEL SECURITY;
CREATE POLICY peer_visible ON services FOR SELECT USING (
  (SELECT peer_private.staff_holds('SERVICES_READ'))
  OR account_id IN (SELECT peer_private.accounts_with('SERVICES_READ')));

ALTER TABLE contacts ENABLE ROW LEVEL SECURITY;
CREATE POLICY peer_visible ON contacts FOR SELECT USING (
  (SELECT peer_private.staff_holds('CONTACTS_READ'))
  OR account_id IN (SELECT peer_private.accounts_with('CONTACTS_READ')));

ALTER TABLE link_groups ENABLE ROW LEVEL SECURITY;
CREATE POLICY peer_visible ON link_groups FOR SELECT USING (
  id IN (SELECT peer_private.visible_groups()));

ALTER TABLE link_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY peer_visible ON link_members FOR SELECT USING (
  group_id IN (SELECT peer_private.visible_groups()));

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY peer_visible ON users FOR SELECT USING (id = (SELECT peer_private.viewer_id()));

-- ------------------------------------------------------------------ the role

-- PostGraphile connects as the server's superuser (which bypasses RLS, as the gateway's
-- connection and the unchecked peer do) and switches to this role for every request
-- (--default-role): a role that may read, and sees only what the policies let through.
GRANT USAGE ON SCHEMA public, peer_private TO PEER_ROLE;
GRANT SELECT ON accounts, credit_ledger_entries, invoices, invoice_lines, tickets, ticket_messages,
  services, contacts, link_groups, link_members, users TO PEER_ROLE;
