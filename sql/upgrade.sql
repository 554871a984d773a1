--
-- ALTER EXTENSION pg_ws UPDATE from 1.0, 1.1, 1.2, 1.2.1, 1.2.2, 1.3.0 and 1.3.1 makes
-- exactly what a fresh install of the current version makes: the same
-- objects, with the same definitions, privileges and initial privileges
-- (which pg_dump relies on), triggers and extconfig.  Each is installed in
-- a database of its own; all are described by the same query, and the
-- descriptions compared.
--

-- one row per object or property; privileges with the extension's owner
-- shown as "owner", so that the output does not depend on who runs it
SELECT $describe$
WITH ext AS (
    SELECT oid, extowner, extversion, extconfig, extcondition
    FROM pg_catalog.pg_extension WHERE extname = 'pg_ws'
), members AS (
    SELECT d.classid, d.objid
    FROM pg_catalog.pg_depend d, ext
    WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
      AND d.refobjid = ext.oid AND d.deptype = 'e'
), tables AS (
    SELECT c.oid, c.relkind FROM members m
    JOIN pg_catalog.pg_class c
      ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = m.objid
), objects (kind, name, detail, acl) AS (
    SELECT 'extension', 'pg_ws', 'version ' || extversion, NULL::pg_catalog.aclitem[]
    FROM ext
  UNION ALL
    SELECT 'member', pg_catalog.pg_describe_object(m.classid, m.objid, 0), '', NULL
    FROM members m
    -- 17 also lists the row types of the extension's relations and their
    -- arrays, which come and go with the relations themselves
    WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_type ty
                      LEFT JOIN pg_catalog.pg_type el ON el.oid = ty.typelem
                      WHERE m.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                        AND ty.oid = m.objid
                        AND (ty.typrelid <> 0 OR el.typrelid <> 0))
  UNION ALL
    SELECT 'function', p.oid::pg_catalog.regprocedure::text,
           pg_catalog.format('returns %s; language %s, volatile %s, parallel %s, strict %s, security definer %s, config %s, source %s',
                             pg_catalog.pg_get_function_result(p.oid), l.lanname,
                             p.provolatile, p.proparallel, p.proisstrict,
                             p.prosecdef, COALESCE(p.proconfig::text, 'none'), p.prosrc),
           p.proacl
    FROM members m
    JOIN pg_catalog.pg_proc p
      ON m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = m.objid
    JOIN pg_catalog.pg_language l ON l.oid = p.prolang
  UNION ALL
    SELECT 'relation', t.oid::pg_catalog.regclass::text, 'relkind ' || t.relkind::text, c.relacl
    FROM tables t JOIN pg_catalog.pg_class c ON c.oid = t.oid
  UNION ALL
    -- on one line, and without the column qualifiers 15 writes and 16 leaves
    -- out when the view reads one relation
    SELECT 'view', t.oid::pg_catalog.regclass::text,
           pg_catalog.btrim(pg_catalog.regexp_replace(
               pg_catalog.regexp_replace(pg_catalog.pg_get_viewdef(t.oid), '\s+', ' ', 'g'),
               '([ (,])' || c.relname || '\.', '\1', 'g')), NULL
    FROM tables t JOIN pg_catalog.pg_class c ON c.oid = t.oid WHERE t.relkind = 'v'
  UNION ALL
    SELECT 'column', pg_catalog.format('%s.%s', t.oid::pg_catalog.regclass, a.attname),
           pg_catalog.concat_ws(' ',
                                pg_catalog.format_type(a.atttypid, a.atttypmod),
                                CASE WHEN a.attnotnull THEN 'not null' END,
                                CASE WHEN a.attidentity <> '' THEN 'identity ' || a.attidentity::text END,
                                'default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid)),
           a.attacl
    FROM tables t
    JOIN pg_catalog.pg_attribute a
      ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = t.oid AND ad.adnum = a.attnum
    WHERE t.relkind IN ('r', 'v')
  UNION ALL
    SELECT 'index', i.indexrelid::pg_catalog.regclass::text,
           pg_catalog.pg_get_indexdef(i.indexrelid), NULL
    FROM tables t JOIN pg_catalog.pg_index i ON i.indrelid = t.oid
  UNION ALL
    SELECT 'constraint', pg_catalog.format('%s %s', co.conrelid::pg_catalog.regclass, co.conname),
           pg_catalog.pg_get_constraintdef(co.oid), NULL
    FROM tables t JOIN pg_catalog.pg_constraint co ON co.conrelid = t.oid
    -- 18 also records NOT NULL as constraints; the columns show them
    WHERE co.contype <> 'n'
  UNION ALL
    SELECT 'trigger', pg_catalog.format('%s %s', tg.tgrelid::pg_catalog.regclass, tg.tgname),
           pg_catalog.pg_get_triggerdef(tg.oid), NULL
    FROM tables t JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = t.oid
    WHERE NOT tg.tgisinternal
  UNION ALL
    SELECT 'extconfig', c.oid::pg_catalog.regclass::text, 'condition ' || pg_catalog.quote_literal(x.cond), NULL
    FROM ext, ROWS FROM (pg_catalog.unnest(ext.extconfig), pg_catalog.unnest(ext.extcondition)) AS x (rel, cond)
    JOIN pg_catalog.pg_class c ON c.oid = x.rel
  UNION ALL
    SELECT 'initial privileges',
           pg_catalog.pg_describe_object(ip.classoid, ip.objoid, ip.objsubid),
           'privtype ' || ip.privtype::text, ip.initprivs
    FROM pg_catalog.pg_init_privs ip
    JOIN members m ON m.classid = ip.classoid AND m.objid = ip.objoid
)
SELECT o.kind, o.name, o.detail,
       CASE WHEN o.acl IS NULL THEN NULL ELSE
       (SELECT pg_catalog.string_agg(pg_catalog.format('%s: %s', r.grantee, r.privileges), '; '
                                     ORDER BY r.grantee)
        FROM (SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                          WHEN a.grantee = ext.extowner THEN 'owner'
                          ELSE pg_catalog.pg_get_userbyid(a.grantee) END AS grantee,
                     pg_catalog.string_agg(a.privilege_type, ','
                                           ORDER BY a.privilege_type) AS privileges
              FROM pg_catalog.aclexplode(o.acl) a, ext
              -- 17's MAINTAIN, which every owner has and pg_ws never grants
              WHERE a.privilege_type <> 'MAINTAIN'
              GROUP BY 1) r) END AS privileges
FROM objects o
$describe$ AS describe \gset

CREATE DATABASE pg_ws_upgraded;
CREATE DATABASE pg_ws_upgraded_from_1_1;
CREATE DATABASE pg_ws_upgraded_from_1_2;
CREATE DATABASE pg_ws_upgraded_from_1_2_1;
CREATE DATABASE pg_ws_upgraded_from_1_2_2;
CREATE DATABASE pg_ws_upgraded_from_1_3_0;
CREATE DATABASE pg_ws_upgraded_from_1_3_1;
CREATE DATABASE pg_ws_fresh;

-- 1.0, then ALTER EXTENSION pg_ws UPDATE (the warning that these databases
-- are not broadcast is the install test's business)
\c pg_ws_upgraded
SET client_min_messages = error;
CREATE EXTENSION pg_ws VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'pg_ws';
ALTER EXTENSION pg_ws UPDATE;
RESET client_min_messages;
SELECT * FROM (:describe) d ORDER BY 1, 2, 3;
SELECT pg_catalog.md5(pg_catalog.string_agg(d::text, E'\n' ORDER BY d::text)) AS upgraded
FROM (:describe) d \gset

-- 1.1, then ALTER EXTENSION pg_ws UPDATE
\c pg_ws_upgraded_from_1_1
SET client_min_messages = error;
CREATE EXTENSION pg_ws VERSION '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'pg_ws';
ALTER EXTENSION pg_ws UPDATE;
RESET client_min_messages;
SELECT pg_catalog.md5(pg_catalog.string_agg(d::text, E'\n' ORDER BY d::text)) AS upgraded_from_1_1
FROM (:describe) d \gset

-- 1.2, then ALTER EXTENSION pg_ws UPDATE
\c pg_ws_upgraded_from_1_2
SET client_min_messages = error;
CREATE EXTENSION pg_ws VERSION '1.2';
SELECT extversion FROM pg_extension WHERE extname = 'pg_ws';
ALTER EXTENSION pg_ws UPDATE;
RESET client_min_messages;
SELECT pg_catalog.md5(pg_catalog.string_agg(d::text, E'\n' ORDER BY d::text)) AS upgraded_from_1_2
FROM (:describe) d \gset

-- 1.2.1, then ALTER EXTENSION pg_ws UPDATE
\c pg_ws_upgraded_from_1_2_1
SET client_min_messages = error;
CREATE EXTENSION pg_ws VERSION '1.2.1';
SELECT extversion FROM pg_extension WHERE extname = 'pg_ws';
ALTER EXTENSION pg_ws UPDATE;
RESET client_min_messages;
SELECT pg_catalog.md5(pg_catalog.string_agg(d::text, E'\n' ORDER BY d::text)) AS upgraded_from_1_2_1
FROM (:describe) d \gset

-- 1.2.2, then ALTER EXTENSION pg_ws UPDATE
\c pg_ws_upgraded_from_1_2_2
SET client_min_messages = error;
CREATE EXTENSION pg_ws VERSION '1.2.2';
SELECT extversion FROM pg_extension WHERE extname = 'pg_ws';
ALTER EXTENSION pg_ws UPDATE;
RESET client_min_messages;
SELECT pg_catalog.md5(pg_catalog.string_agg(d::text, E'\n' ORDER BY d::text)) AS upgraded_from_1_2_2
FROM (:describe) d \gset

-- 1.3.0, then ALTER EXTENSION pg_ws UPDATE, with a watched table and a
-- role that may call pg_ws_watch(): the catalog keeps its rows (with no
-- filter columns), and the role is named, since pg_ws_watch() is made
-- anew with the privileges of a fresh install
\c pg_ws_upgraded_from_1_3_0
SET client_min_messages = error;
CREATE EXTENSION pg_ws VERSION '1.3.0';
SELECT extversion FROM pg_extension WHERE extname = 'pg_ws';
CREATE TABLE gate (id integer PRIMARY KEY, name text, site_id integer);
SELECT pg_ws_watch('gate', 'row', columns => '{id,name}');
CREATE ROLE upgrade_watcher;
GRANT EXECUTE ON FUNCTION pg_ws_watch(regclass, text, name[], regclass, text, boolean)
	TO upgrade_watcher;
GRANT SELECT ON pg_ws_stats TO upgrade_watcher;
-- the library answers 1.3.0's pg_ws_stats, which lacks subscribers_indexed,
-- until the update runs
SELECT count(*) AS stats_rows_before_update FROM pg_ws_stats;
SET client_min_messages = warning;
ALTER EXTENSION pg_ws UPDATE;
RESET client_min_messages;
SELECT subscribers_indexed IS NULL OR subscribers_indexed >= 0 AS stats_after_update
FROM pg_ws_stats;
SELECT relation, kind, columns, event_prefix, filter_columns FROM pg_ws_watched;
SELECT pg_ws_watch('gate', 'row', columns => '{id,name}', filter_columns => '{site_id}');
SELECT relation, filter_columns FROM pg_ws_watched;
SELECT pg_ws_unwatch('gate');
DROP TABLE gate;
SELECT pg_catalog.md5(pg_catalog.string_agg(d::text, E'\n' ORDER BY d::text)) AS upgraded_from_1_3_0
FROM (:describe) d \gset
DROP ROLE upgrade_watcher;

-- 1.3.1, then ALTER EXTENSION pg_ws UPDATE, with a role that may read
-- pg_ws_stats: the library answers 1.3.1's pg_ws_stats, which lacks
-- resumes_refused, until the update runs, and the role is named, since
-- the view is made anew with the privileges of a fresh install
\c pg_ws_upgraded_from_1_3_1
SET client_min_messages = error;
CREATE EXTENSION pg_ws VERSION '1.3.1';
SELECT extversion FROM pg_extension WHERE extname = 'pg_ws';
CREATE ROLE upgrade_reader;
GRANT SELECT ON pg_ws_stats TO upgrade_reader;
SELECT count(*) AS stats_rows_before_update, count(subscribers_indexed) >= 0 AS has_1_3_1_columns
FROM pg_ws_stats;
SET client_min_messages = warning;
ALTER EXTENSION pg_ws UPDATE;
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'pg_ws';
SELECT resumes_refused >= 0 AS stats_after_update FROM pg_ws_stats;
SELECT pg_catalog.md5(pg_catalog.string_agg(d::text, E'\n' ORDER BY d::text)) AS upgraded_from_1_3_1
FROM (:describe) d \gset
DROP ROLE upgrade_reader;

-- a fresh install of the current version
\c pg_ws_fresh
SET client_min_messages = error;
CREATE EXTENSION pg_ws;
RESET client_min_messages;
SELECT * FROM (:describe) d ORDER BY 1, 2, 3;
SELECT pg_catalog.md5(pg_catalog.string_agg(d::text, E'\n' ORDER BY d::text)) AS fresh
FROM (:describe) d \gset

SELECT :'upgraded' = :'fresh' AS upgrade_equals_fresh_install,
       :'upgraded_from_1_1' = :'fresh' AS upgrade_from_1_1_equals_fresh_install,
       :'upgraded_from_1_2' = :'fresh' AS upgrade_from_1_2_equals_fresh_install,
       :'upgraded_from_1_2_1' = :'fresh' AS upgrade_from_1_2_1_equals_fresh_install,
       :'upgraded_from_1_2_2' = :'fresh' AS upgrade_from_1_2_2_equals_fresh_install,
       :'upgraded_from_1_3_0' = :'fresh' AS upgrade_from_1_3_0_equals_fresh_install,
       :'upgraded_from_1_3_1' = :'fresh' AS upgrade_from_1_3_1_equals_fresh_install;

\c contrib_regression
DROP DATABASE pg_ws_upgraded;
DROP DATABASE pg_ws_upgraded_from_1_1;
DROP DATABASE pg_ws_upgraded_from_1_2;
DROP DATABASE pg_ws_upgraded_from_1_2_1;
DROP DATABASE pg_ws_upgraded_from_1_2_2;
DROP DATABASE pg_ws_upgraded_from_1_3_0;
DROP DATABASE pg_ws_upgraded_from_1_3_1;
DROP DATABASE pg_ws_fresh;
