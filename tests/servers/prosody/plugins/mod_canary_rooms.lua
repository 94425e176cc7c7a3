-- Test policy for the MUC: rooms whose name starts with "forbidden" cannot be created, so a
-- probe can show that a refused join fails at once with the server's error stanza.
local st = require "util.stanza";
local jid_node = require "util.jid".node;

module:hook("muc-room-pre-create", function(event)
	local name = jid_node(event.room.jid) or "";
	if name:match("^forbidden") then
		event.origin.send(st.error_reply(event.stanza, "cancel", "not-allowed", "Room creation is restricted"));
		return true;
	end
end, 100);
