-- What Django 3.2's `manage.py sqlmigrate app 0001` prints for the event
-- document's models on PostgreSQL, with DEFAULT_AUTO_FIELD =
-- 'django.db.models.BigAutoField' (an app named "app"; the constraint and
-- index names carry Django's md5 digests of table and column, shortened as
-- Django shortens names over 63 bytes).  The tests watch these tables as a
-- Django project's (README.md, "Moving from Django Channels").  Run with
-- search_path set to the schema to make them in.
BEGIN;
--
-- Create model Client
--
CREATE TABLE "app_client" ("id" bigserial NOT NULL PRIMARY KEY, "first_seen" timestamp with time zone NULL, "last_seen" timestamp with time zone NULL, "visit_count" integer NOT NULL, "gender" varchar(10) NULL, "age" integer NULL, "image" varchar(100) NULL);
--
-- Create model WorkingGraphic
--
CREATE TABLE "app_workinggraphic" ("id" bigserial NOT NULL PRIMARY KEY, "name" varchar(100) NOT NULL, "start_time" time NOT NULL, "end_time" time NOT NULL);
--
-- Create model VisitHistory
--
CREATE TABLE "app_visithistory" ("id" bigserial NOT NULL PRIMARY KEY, "datetime" timestamp with time zone NOT NULL, "device_id" varchar(255) NOT NULL, "client_id" bigint NOT NULL);
--
-- Create model Employee
--
CREATE TABLE "app_employee" ("id" bigserial NOT NULL PRIMARY KEY, "first_name" varchar(100) NOT NULL, "last_name" varchar(100) NOT NULL, "email" varchar(254) NULL, "phone_number" varchar(20) NULL, "image" varchar(100) NULL, "working_graphic_id" bigint NULL);
--
-- Create model Attendance
--
CREATE TABLE "app_attendance" ("id" bigserial NOT NULL PRIMARY KEY, "device_id" varchar(255) NOT NULL, "image" varchar(100) NULL, "datetime" timestamp with time zone NOT NULL, "score" double precision NULL, "employee_id" bigint NOT NULL);
ALTER TABLE "app_visithistory" ADD CONSTRAINT "app_visithistory_client_id_a0af785a_fk_app_client_id" FOREIGN KEY ("client_id") REFERENCES "app_client" ("id") DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX "app_visithistory_client_id_a0af785a" ON "app_visithistory" ("client_id");
ALTER TABLE "app_employee" ADD CONSTRAINT "app_employee_working_graphi_d045999f_fk_app_workinggraphic_id" FOREIGN KEY ("working_graphic_id") REFERENCES "app_workinggraphic" ("id") DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX "app_employee_working_graphic_id_d045999f" ON "app_employee" ("working_graphic_id");
ALTER TABLE "app_attendance" ADD CONSTRAINT "app_attendance_employee_id_8e24606c_fk_app_employee_id" FOREIGN KEY ("employee_id") REFERENCES "app_employee" ("id") DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX "app_attendance_employee_id_8e24606c" ON "app_attendance" ("employee_id");
COMMIT;
