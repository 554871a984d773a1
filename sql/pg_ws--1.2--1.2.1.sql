/* pg_ws--1.2--1.2.1.sql: from 1.2 to 1.2.1 (ALTER EXTENSION pg_ws UPDATE) */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pg_ws UPDATE TO '1.2.1'" to load this file. \quit
