-- A manuscript numbers its tables and figures 1, 2, ... throughout. Quarto's book filter adds
-- a Typst rule that restarts those counters at every chapter (right for the book, where
-- numbers read "Table 3.1"); here the chapters are the manuscript's sections, so the rule
-- is removed.
local MARK = "Reset Quarto's custom figure counters at each chapter"

function Meta(meta)
  local blocks = meta["include-before"]
  if blocks == nil then
    return nil
  end
  local kept = pandoc.List({})
  for _, item in ipairs(blocks) do
    local text = pandoc.utils.stringify(item)
    local raw = item[1] ~= nil and item[1].text or ""
    if not (string.find(raw, MARK, 1, true) or string.find(text, MARK, 1, true)) then
      kept:insert(item)
    end
  end
  meta["include-before"] = kept
  return meta
end
