/* pg_ws--1.2.1--1.2.2.sql: from 1.2.1 to 1.2.2 (ALTER EXTENSION pg_ws UPDATE) */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pg_ws UPDATE TO '1.2.2'" to load this file. \quit
