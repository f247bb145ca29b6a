/* Grid value formatters: how a grid cell shows a time (the row data keeps its own value, so
   filters and CSV exports are unchanged). Same format as dashboard/timestamps.py. */
(function (root) {
  "use strict";

  var TIME = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})/;

  /* A UTC time ("2026-11-20 10:00:00", "2026-11-20T10:00:00Z" or with an offset) as
     "2026-11-20 10:00:00 UTC"; anything else is shown as it is. */
  function utcTime(value) {
    if (value === null || value === undefined || value === "") {
      return "";
    }
    var text = String(value);
    var zoned = /(Z|[+-]\d{2}:?\d{2})$/.test(text);
    if (zoned) {
      var moment = new Date(text);
      if (isNaN(moment.getTime())) {
        return text;
      }
      text = moment.toISOString();
    }
    var match = TIME.exec(text);
    return match ? match[1] + " " + match[2] + " UTC" : text;
  }

  /* A device's wall-clock time ("2026-11-20T08:15:00", no zone) as "2026-11-20 08:15:00". */
  function localTime(value) {
    if (value === null || value === undefined || value === "") {
      return "";
    }
    var match = TIME.exec(String(value));
    return match ? match[1] + " " + match[2] : String(value);
  }

  var functions = (root.dashAgGridFunctions = root.dashAgGridFunctions || {});
  functions.utcTime = utcTime;
  functions.localTime = localTime;
})(typeof window !== "undefined" ? window : globalThis);
