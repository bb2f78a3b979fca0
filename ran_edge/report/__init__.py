"""report.json and what people read from it: the schema and the JSON written at the file
boundary (`json_report`), the typed `Report` every consumer reads (`model`), console tables
(`console`), the offline HTML page (`html`, `plots`)."""
