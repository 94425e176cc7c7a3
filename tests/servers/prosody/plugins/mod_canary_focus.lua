-- A stand-in for Jitsi's focus (jicofo behind `focus.<domain>`): answers a client's conference
-- request as jicofo does once it has set the room up, `<conference ready='true'/>`, so a probe
-- can walk Jitsi Meet's join order (ask focus, then join the MUC). Rooms whose name starts with
-- "nofocus" get what a client sees while jicofo is not connected: service-unavailable.
local st = require "util.stanza";
local jid_node = require "util.jid".node;
local xmlns_focus = "http://jitsi.org/protocol/focus";

module:hook("iq-set/host/" .. xmlns_focus .. ":conference", function(event)
	local stanza = event.stanza;
	local conference = stanza:get_child("conference", xmlns_focus);
	local room = conference.attr.room or "";
	if (jid_node(room) or ""):match("^nofocus") then
		event.origin.send(st.error_reply(stanza, "cancel", "service-unavailable", "jicofo is not connected"));
		return true;
	end
	event.origin.send(st.reply(stanza):tag("conference", {
		xmlns = xmlns_focus, ready = "true", room = room, focusjid = "focus@auth." .. module.host:gsub("^focus%.", ""),
	}));
	return true;
end);
