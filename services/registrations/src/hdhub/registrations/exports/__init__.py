"""Exports of an organisation's registrations of one DCD version: CSV in the Upload
Center's format, XLSX and Parquet (docs/exports.md)."""
