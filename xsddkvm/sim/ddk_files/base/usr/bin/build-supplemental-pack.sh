#!/bin/sh
exec "${0%.sh}.py" "$@"
