#!/usr/bin/env bash
# Validates `medico-cli slicer-xml` against 3D Slicer's ModuleDescription schema with xmllint (Debian package
# libxml2-utils). The schema lives in Slicer's source (SlicerExecutionModel:
# ModuleDescriptionParser/ModuleDescription.xsd) and is not redistributed here; give its path:
#   bash scripts/check_slicer_xml.sh path/to/ModuleDescription.xsd [medico-cli]
# libxml2 refuses to compile that file as published: its enumerationType declares the attribute `hidden` after
# its complexContent (and paramType already declares it), so the check drops that one line from a temporary
# copy; nothing else is changed. Not part of CI (needs the schema); CI checks well-formedness and that every
# flag matches `slicer-segment` (cli/tests/cli/slicer_cli.rs).
set -euo pipefail
xsd=$1
exe=${2:-medico-cli}
command -v xmllint >/dev/null || apt-get install -y -q libxml2-utils >/dev/null
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 - "$xsd" "$tmp/ModuleDescription.xsd" <<'PY'
import sys
text = open(sys.argv[1]).read()
misplaced = '      </xsd:complexContent>\n      <xsd:attribute name="hidden" type="xsd:boolean"/>\n'
fixed = text.replace(misplaced, '      </xsd:complexContent>\n', 1)
print("schema: dropped the misplaced 'hidden' attribute of enumerationType" if fixed != text else "schema: used as is")
open(sys.argv[2], "w").write(fixed)
PY
"$exe" slicer-xml > "$tmp/medico.xml"
xmllint --noout --schema "$tmp/ModuleDescription.xsd" "$tmp/medico.xml"
