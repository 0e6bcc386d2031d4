"""The Upload Center's own messages (file and spreadsheet findings) in en, fr, nl and de.
Validation messages come from the DCD engine, already in the user's language."""

from __future__ import annotations

from typing import Any

MESSAGES: dict[str, dict[str, str]] = {
    "empty_file": {
        "en": "The file is empty.",
        "fr": "Le fichier est vide.",
        "nl": "Het bestand is leeg.",
        "de": "Die Datei ist leer.",
    },
    "header_only": {
        "en": "The file has a header but no records.",
        "fr": "Le fichier a un en-tête mais aucun enregistrement.",
        "nl": "Het bestand heeft een kopregel maar geen records.",
        "de": "Die Datei hat eine Kopfzeile, aber keine Datensätze.",
    },
    "binary": {
        "en": "This is not a text CSV file (binary content near line {line}).",
        "fr": "Ce n'est pas un fichier CSV texte (contenu binaire vers la ligne {line}).",
        "nl": "Dit is geen tekst-CSV-bestand (binaire inhoud rond regel {line}).",
        "de": "Dies ist keine Text-CSV-Datei (binärer Inhalt um Zeile {line}).",
    },
    "line_too_long": {
        "en": "Line {line} is longer than {max} bytes; the file is not a CSV of registrations.",
        "fr": "La ligne {line} dépasse {max} octets ; ce n'est pas un CSV d'enregistrements.",
        "nl": "Regel {line} is langer dan {max} bytes; dit is geen CSV met registraties.",
        "de": "Zeile {line} ist länger als {max} Bytes; keine CSV-Datei mit Registrierungen.",
    },
    "too_many_columns": {
        "en": "The header has {count} columns; at most {max} are accepted.",
        "fr": "L'en-tête a {count} colonnes ; au maximum {max} sont acceptées.",
        "nl": "De kopregel heeft {count} kolommen; hoogstens {max} worden aanvaard.",
        "de": "Die Kopfzeile hat {count} Spalten; höchstens {max} sind erlaubt.",
    },
    "wrong_separator": {
        "en": "The columns are separated by {found}; use ; (semicolon) or , (comma).",
        "fr": "Les colonnes sont séparées par {found} ; utilisez ; (point-virgule) ou , (virgule).",
        "nl": "De kolommen zijn gescheiden door {found}; gebruik ; (puntkomma) of , (komma).",
        "de": "Die Spalten sind durch {found} getrennt; verwenden Sie ; (Semikolon) oder , (Komma).",
    },
    "single_column": {
        "en": "The header has one column only: the separator is probably not ; (semicolon).",
        "fr": "L'en-tête n'a qu'une colonne : le séparateur n'est probablement pas ; (point-virgule).",
        "nl": "De kopregel heeft maar één kolom: het scheidingsteken is waarschijnlijk geen ; (puntkomma).",
        "de": "Die Kopfzeile hat nur eine Spalte: das Trennzeichen ist wohl nicht ; (Semikolon).",
    },
    "template_hints_skipped": {
        "en": "Line {line} is the template's line of hints (it starts with #); it was skipped, not read as a record.",
        "fr": "La ligne {line} est la ligne d'aide du modèle (elle commence par #) ; elle a été ignorée, pas lue comme un enregistrement.",
        "nl": "Regel {line} is de hulpregel van het sjabloon (die begint met #); ze werd overgeslagen, niet als record gelezen.",
        "de": "Zeile {line} ist die Hinweiszeile der Vorlage (sie beginnt mit #); sie wurde übersprungen, nicht als Datensatz gelesen.",
    },
    "comma_separator": {
        "en": "The file is separated by commas (,) instead of semicolons (;); it was read as such.",
        "fr": "Le fichier est séparé par des virgules (,) au lieu de points-virgules (;) ; il a été lu ainsi.",
        "nl": "Het bestand is gescheiden door komma's (,) in plaats van puntkomma's (;); zo werd het gelezen.",
        "de": "Die Datei ist durch Kommas (,) statt Semikolons (;) getrennt; sie wurde so gelesen.",
    },
    "decimal_comma": {
        "en": "Column {column}: decimals were written with a comma, as Excel does with Belgian settings (first on line {line}); they were read with a point (72,5 as 72.5).",
        "fr": "Colonne {column} : les décimales sont écrites avec une virgule, comme le fait Excel avec les paramètres belges (d'abord ligne {line}) ; elles ont été lues avec un point (72,5 comme 72.5).",
        "nl": "Kolom {column}: decimalen zijn met een komma geschreven, zoals Excel met Belgische instellingen doet (eerst op regel {line}); ze werden met een punt gelezen (72,5 als 72.5).",
        "de": "Spalte {column}: Dezimalzahlen wurden mit Komma geschrieben, wie Excel mit belgischen Einstellungen (zuerst in Zeile {line}); sie wurden mit Punkt gelesen (72,5 als 72.5).",
    },
    "encoding_cp1252": {
        "en": "{lines} line(s) are not UTF-8 and were read as Windows-1252 (Latin-1); save the file as UTF-8.",
        "fr": "{lines} ligne(s) ne sont pas en UTF-8 et ont été lues en Windows-1252 (Latin-1) ; enregistrez le fichier en UTF-8.",
        "nl": "{lines} regel(s) zijn geen UTF-8 en werden als Windows-1252 (Latin-1) gelezen; bewaar het bestand als UTF-8.",
        "de": "{lines} Zeile(n) sind kein UTF-8 und wurden als Windows-1252 (Latin-1) gelesen; speichern Sie die Datei als UTF-8.",
    },
    "invalid_utf16": {
        "en": "The file starts as UTF-16 text but is not valid UTF-16; save it as CSV UTF-8.",
        "fr": "Le fichier commence comme du texte UTF-16 mais n'est pas de l'UTF-16 valide ; enregistrez-le en CSV UTF-8.",
        "nl": "Het bestand begint als UTF-16-tekst maar is geen geldige UTF-16; bewaar het als CSV UTF-8.",
        "de": "Die Datei beginnt als UTF-16-Text, ist aber kein gültiges UTF-16; speichern Sie sie als CSV UTF-8.",
    },
    "unreadable": {
        "en": "The file could not be read as a CSV of registrations; nothing was stored. Save it again as CSV UTF-8, separated by ; (semicolons), and upload it again.",
        "fr": "Le fichier n'a pas pu être lu comme un CSV d'enregistrements ; rien n'a été enregistré. Enregistrez-le à nouveau en CSV UTF-8, séparé par des ; (points-virgules), et rechargez-le.",
        "nl": "Het bestand kon niet als CSV met registraties gelezen worden; er werd niets bewaard. Bewaar het opnieuw als CSV UTF-8, gescheiden door ; (puntkomma's), en laad het opnieuw op.",
        "de": "Die Datei konnte nicht als CSV mit Registrierungen gelesen werden; nichts wurde gespeichert. Speichern Sie sie erneut als CSV UTF-8, getrennt durch ; (Semikolons), und laden Sie sie erneut hoch.",
    },
    "malformed_csv": {
        "en": "The file cannot be read as CSV from line {line} on (an unclosed quote?).",
        "fr": "Le fichier ne peut être lu comme CSV à partir de la ligne {line} (guillemet non fermé ?).",
        "nl": "Het bestand kan vanaf regel {line} niet als CSV gelezen worden (een niet-gesloten aanhalingsteken?).",
        "de": "Die Datei kann ab Zeile {line} nicht als CSV gelesen werden (ein offenes Anführungszeichen?).",
    },
    "duplicate_column": {
        "en": "The column {column} appears more than once in the header.",
        "fr": "La colonne {column} figure plusieurs fois dans l'en-tête.",
        "nl": "De kolom {column} staat meer dan eens in de kopregel.",
        "de": "Die Spalte {column} kommt mehrmals in der Kopfzeile vor.",
    },
    "unknown_column": {
        "en": "The column {column} is not a field of {dcd}; check the technical name.",
        "fr": "La colonne {column} n'est pas un champ de {dcd} ; vérifiez le nom technique.",
        "nl": "De kolom {column} is geen veld van {dcd}; controleer de technische naam.",
        "de": "Die Spalte {column} ist kein Feld von {dcd}; prüfen Sie den technischen Namen.",
    },
    "missing_column": {
        "en": "The column {column} is not in the file, but every record must give it a value.",
        "fr": "La colonne {column} ne figure pas dans le fichier, mais chaque enregistrement doit lui donner une valeur.",
        "nl": "De kolom {column} staat niet in het bestand, maar elk record moet er een waarde voor geven.",
        "de": "Die Spalte {column} fehlt in der Datei, aber jeder Datensatz muss einen Wert dafür angeben.",
    },
    "field_count": {
        "en": "This record has {count} values but the header has {expected} columns.",
        "fr": "Cet enregistrement a {count} valeurs mais l'en-tête a {expected} colonnes.",
        "nl": "Dit record heeft {count} waarden maar de kopregel heeft {expected} kolommen.",
        "de": "Dieser Datensatz hat {count} Werte, die Kopfzeile aber {expected} Spalten.",
    },
    "truncated": {
        "en": "The last record is cut off: {count} of {expected} values and no line end.",
        "fr": "Le dernier enregistrement est tronqué : {count} valeurs sur {expected} et pas de fin de ligne.",
        "nl": "Het laatste record is afgebroken: {count} van {expected} waarden en geen regeleinde.",
        "de": "Der letzte Datensatz ist abgeschnitten: {count} von {expected} Werten und kein Zeilenende.",
    },
    "too_large": {
        "en": "The file is larger than {max} bytes.",
        "fr": "Le fichier dépasse {max} octets.",
        "nl": "Het bestand is groter dan {max} bytes.",
        "de": "Die Datei ist größer als {max} Bytes.",
    },
    "formula_like": {
        "en": "This value looks like a spreadsheet formula; it was not accepted.",
        "fr": "Cette valeur ressemble à une formule de tableur ; elle n'a pas été acceptée.",
        "nl": "Deze waarde lijkt op een rekenbladformule; ze werd niet aanvaard.",
        "de": "Dieser Wert sieht wie eine Tabellenformel aus; er wurde nicht angenommen.",
    },
    "excel_date_serial": {
        "en": "A spreadsheet turned this date into a serial number (it would be {date}); write dates as dd/mm/yyyy.",
        "fr": "Un tableur a transformé cette date en numéro de série (ce serait le {date}) ; écrivez les dates jj/mm/aaaa.",
        "nl": "Een rekenblad maakte van deze datum een volgnummer (het zou {date} zijn); schrijf datums als dd/mm/jjjj.",
        "de": "Eine Tabellenkalkulation machte aus dem Datum eine Seriennummer (es wäre {date}); Datum als tt/mm/jjjj.",
    },
    "excel_date_format": {
        "en": "A spreadsheet reformatted this date (no leading zero or a 2-digit year); write dd/mm/yyyy.",
        "fr": "Un tableur a reformaté cette date (sans zéro initial ou année à 2 chiffres) ; écrivez jj/mm/aaaa.",
        "nl": "Een rekenblad herschreef deze datum (zonder voorloopnul of met een jaar van 2 cijfers); schrijf dd/mm/jjjj.",
        "de": "Eine Tabellenkalkulation formatierte das Datum um (ohne führende Null oder zweistelliges Jahr); tt/mm/jjjj.",
    },
    "iso_date": {
        "en": "Dates are written dd/mm/yyyy, not yyyy-mm-dd.",
        "fr": "Les dates s'écrivent jj/mm/aaaa, pas aaaa-mm-jj.",
        "nl": "Datums worden geschreven als dd/mm/jjjj, niet jjjj-mm-dd.",
        "de": "Daten werden als tt/mm/jjjj geschrieben, nicht jjjj-mm-tt.",
    },
    "excel_made_date": {
        "en": "A spreadsheet turned this value into a date; format the column as text before saving.",
        "fr": "Un tableur a transformé cette valeur en date ; mettez la colonne au format texte avant d'enregistrer.",
        "nl": "Een rekenblad maakte van deze waarde een datum; zet de kolom op tekst voor het bewaren.",
        "de": "Eine Tabellenkalkulation machte aus dem Wert ein Datum; formatieren Sie die Spalte als Text.",
    },
    "excel_scientific": {
        "en": "A spreadsheet wrote this number in scientific notation and digits are lost; format the column as text.",
        "fr": "Un tableur a écrit ce nombre en notation scientifique et des chiffres sont perdus ; format texte.",
        "nl": "Een rekenblad schreef dit getal in wetenschappelijke notatie en cijfers gingen verloren; zet de kolom op tekst.",
        "de": "Eine Tabellenkalkulation schrieb die Zahl wissenschaftlich, Ziffern gingen verloren; Spalte als Text.",
    },
    "leading_zero_dropped": {
        "en": "This number should have {expected} digits: a spreadsheet probably dropped its leading zero.",
        "fr": "Ce numéro devrait avoir {expected} chiffres : un tableur a probablement supprimé le zéro initial.",
        "nl": "Dit nummer hoort {expected} cijfers te hebben: een rekenblad liet waarschijnlijk de voorloopnul vallen.",
        "de": "Diese Nummer sollte {expected} Ziffern haben: eine Tabellenkalkulation entfernte wohl die führende Null.",
    },
    "code_leading_zero": {
        "en": "{message} If the code starts with 0, a spreadsheet may have dropped it.",
        "fr": "{message} Si le code commence par 0, un tableur l'a peut-être supprimé.",
        "nl": "{message} Als de code met 0 begint, liet een rekenblad die misschien vallen.",
        "de": "{message} Beginnt der Code mit 0, hat eine Tabellenkalkulation sie vielleicht entfernt.",
    },
    "rejected_with_file": {
        "en": "Not stored: with validation 'Validate all' one error anywhere in the file stores nothing.",
        "fr": "Non enregistré : avec la validation « Tout valider », une erreur dans le fichier n'enregistre rien.",
        "nl": "Niet bewaard: met validatie 'Alles valideren' bewaart één fout in het bestand niets.",
        "de": "Nicht gespeichert: mit 'Alles validieren' speichert ein Fehler in der Datei nichts.",
    },
    "technical_failure": {
        "en": "The upload could not be processed: {detail}",
        "fr": "Le chargement n'a pas pu être traité : {detail}",
        "nl": "De upload kon niet verwerkt worden: {detail}",
        "de": "Der Upload konnte nicht verarbeitet werden: {detail}",
    },
    "sequence_file_name": {
        "en": "The sequence file must be named ARL_yyyymmddHHMMSS.csv with a real date and time (e.g. HSP_20240827092014.csv).",
        "fr": "Le fichier de séquences doit s'appeler ARL_aaaammjjHHMMSS.csv avec une date et une heure qui existent (p. ex. HSP_20240827092014.csv).",
        "nl": "Het sequentiebestand moet ARL_jjjjmmddUUMMSS.csv heten, met een bestaande datum en tijd (bv. HSP_20240827092014.csv).",
        "de": "Die Sequenzdatei muss ARL_jjjjmmttHHMMSS.csv heißen, mit einem existierenden Datum und einer existierenden Uhrzeit (z. B. HSP_20240827092014.csv).",
    },
    "sequence_header": {
        "en": "The sequence file's header must be filename;recordname;genetic_sequence.",
        "fr": "L'en-tête du fichier de séquences doit être filename;recordname;genetic_sequence.",
        "nl": "De kopregel van het sequentiebestand moet filename;recordname;genetic_sequence zijn.",
        "de": "Die Kopfzeile der Sequenzdatei muss filename;recordname;genetic_sequence sein.",
    },
    "sequence_filename_column": {
        "en": "filename must be the sequence file's own name, {expected}.",
        "fr": "filename doit être le nom du fichier de séquences, {expected}.",
        "nl": "filename moet de naam van het sequentiebestand zelf zijn, {expected}.",
        "de": "filename muss der Name der Sequenzdatei selbst sein, {expected}.",
    },
    "sequence_recordname": {
        "en": "recordname must be {expected}_ followed by 5 digits.",
        "fr": "recordname doit être {expected}_ suivi de 5 chiffres.",
        "nl": "recordname moet {expected}_ zijn gevolgd door 5 cijfers.",
        "de": "recordname muss {expected}_ gefolgt von 5 Ziffern sein.",
    },
    "sequence_letters": {
        "en": "The genetic sequence has {character} at position {position}; only upper-case IUPAC nucleotide codes (ACGTURYSWKMBDHVN) are allowed.",
        "fr": "La séquence génétique contient {character} en position {position} ; seuls les codes de nucléotides IUPAC en majuscules (ACGTURYSWKMBDHVN) sont admis.",
        "nl": "De genetische sequentie bevat {character} op positie {position}; enkel IUPAC-nucleotidecodes in hoofdletters (ACGTURYSWKMBDHVN) zijn toegelaten.",
        "de": "Die genetische Sequenz enthält {character} an Position {position}; nur IUPAC-Nukleotidcodes in Großbuchstaben (ACGTURYSWKMBDHVN) sind erlaubt.",
    },
    "sequence_missing": {
        "en": "The genetic sequence is empty.",
        "fr": "La séquence génétique est vide.",
        "nl": "De genetische sequentie is leeg.",
        "de": "Die genetische Sequenz ist leer.",
    },
    "sequence_duplicate": {
        "en": "This recordname appears more than once in the sequence file.",
        "fr": "Ce recordname figure plusieurs fois dans le fichier de séquences.",
        "nl": "Deze recordname staat meer dan eens in het sequentiebestand.",
        "de": "Dieser recordname kommt mehrmals in der Sequenzdatei vor.",
    },
    "sequence_not_referenced": {
        "en": "No registration in the metadata file has this recordname as TX_ATT_RECRD.",
        "fr": "Aucun enregistrement du fichier de métadonnées n'a ce recordname comme TX_ATT_RECRD.",
        "nl": "Geen registratie in het metadatabestand heeft deze recordname als TX_ATT_RECRD.",
        "de": "Keine Registrierung der Metadatendatei hat diesen recordname als TX_ATT_RECRD.",
    },
    "linked_record_missing": {
        "en": "The linked sequence file has no recordname {value}.",
        "fr": "Le fichier de séquences lié n'a pas de recordname {value}.",
        "nl": "Het gekoppelde sequentiebestand heeft geen recordname {value}.",
        "de": "Die verknüpfte Sequenzdatei hat keinen recordname {value}.",
    },
    "linked_record_twice": {
        "en": "Another registration of this file already links recordname {value}.",
        "fr": "Un autre enregistrement de ce fichier lie déjà le recordname {value}.",
        "nl": "Een andere registratie in dit bestand koppelt recordname {value} al.",
        "de": "Eine andere Registrierung dieser Datei verknüpft recordname {value} bereits.",
    },
    "linked_file_mismatch": {
        "en": "TX_ATT must name the linked sequence file, {expected}.",
        "fr": "TX_ATT doit nommer le fichier de séquences lié, {expected}.",
        "nl": "TX_ATT moet het gekoppelde sequentiebestand noemen, {expected}.",
        "de": "TX_ATT muss die verknüpfte Sequenzdatei nennen, {expected}.",
    },
}


#: Parameters that repeat a submitted value, or what was read from it (the date a serial
#: number stands for). A message about a masked (personal-data) column is built without
#: them, from the template below: a report that masks a birth date must not spell it out.
ECHOES = frozenset({"date", "value"})

MASKED_MESSAGES: dict[str, dict[str, str]] = {
    "excel_date_serial": {
        "en": "A spreadsheet turned this date into a serial number; write dates as dd/mm/yyyy.",
        "fr": "Un tableur a transformé cette date en numéro de série ; écrivez les dates jj/mm/aaaa.",
        "nl": "Een rekenblad maakte van deze datum een volgnummer; schrijf datums als dd/mm/jjjj.",
        "de": "Eine Tabellenkalkulation machte aus dem Datum eine Seriennummer; Datum als tt/mm/jjjj.",
    },
    "linked_record_missing": {
        "en": "The linked sequence file has no such recordname.",
        "fr": "Le fichier de séquences lié n'a pas ce recordname.",
        "nl": "Het gekoppelde sequentiebestand heeft deze recordname niet.",
        "de": "Die verknüpfte Sequenzdatei hat diesen recordname nicht.",
    },
    "linked_record_twice": {
        "en": "Another registration of this file already links this recordname.",
        "fr": "Un autre enregistrement de ce fichier lie déjà ce recordname.",
        "nl": "Een andere registratie in dit bestand koppelt deze recordname al.",
        "de": "Eine andere Registrierung dieser Datei verknüpft diesen recordname bereits.",
    },
}


def without_echoes(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without those that repeat the submitted value."""
    return {k: v for k, v in params.items() if k not in ECHOES}


def message(rule: str, lang: str, params: dict[str, Any] | None = None, *, masked: bool = False) -> str:
    """The message of ``rule`` in ``lang`` (en when missing). With ``masked`` (the finding
    is about a masked column) it is built without any parameter in :data:`ECHOES`."""
    templates = (MASKED_MESSAGES.get(rule) if masked else None) or MESSAGES.get(rule)
    if templates is None:
        return rule
    template = templates.get(lang) or templates["en"]
    values = without_echoes(params or {}) if masked else (params or {})
    try:
        return template.format(**values)
    except (KeyError, IndexError):
        return template
