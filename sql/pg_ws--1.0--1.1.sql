/* pg_ws--1.0--1.1.sql: from 1.0 to 1.1 (ALTER EXTENSION pg_ws UPDATE) */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pg_ws UPDATE TO '1.1'" to load this file. \quit
