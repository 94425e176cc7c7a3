# A tiny Rails ActionCable app (standalone, Debian's ruby-actioncable) with the Redis subscription
# adapter: POST /api/login -> token; /cable?token=T; RoomChannel {room} confirms, or rejects a
# room named forbidden*; `speak` {body} is broadcast to the room through Redis.
# Run by start.sh (puma); REDIS_URL names the Redis.
require "action_cable"
require "action_dispatch"
require "base64"
require "json"
require "logger"
require "openssl"

# Tokens as the node servers sign them (tests/servers/lib.js), so one login works everywhere.
module CanaryToken
  SECRET = ENV.fetch("TEST_SERVER_SECRET", "joincanary-test-secret")
  PASSWORD = ENV.fetch("TEST_SERVER_PASSWORD", "canary-pass")

  def self.b64(bytes) = Base64.urlsafe_encode64(bytes, padding: false)

  def self.issue(user)
    body = b64(JSON.generate({ "user" => user, "iat" => (Time.now.to_f * 1000).to_i }))
    "#{body}.#{b64(OpenSSL::HMAC.digest("SHA256", SECRET, body))}"
  end

  def self.verify(token)
    body, mac = token.to_s.split(".", 2)
    return nil if body.nil? || mac.nil?
    return nil unless Rack::Utils.secure_compare(mac, b64(OpenSSL::HMAC.digest("SHA256", SECRET, body)))
    JSON.parse(Base64.urlsafe_decode64(body))["user"]
  rescue ArgumentError, JSON::ParserError
    nil
  end
end

module ApplicationCable
  class Connection < ActionCable::Connection::Base
    identified_by :user

    def connect
      self.user = CanaryToken.verify(request.params["token"]) || reject_unauthorized_connection
    end
  end

  class Channel < ActionCable::Channel::Base
  end
end

class RoomChannel < ApplicationCable::Channel
  def subscribed
    room = params[:room].to_s
    return reject if room.empty? || room.start_with?("forbidden")
    stream_from "room:#{room}"
  end

  # perform "speak" {body}: to every subscriber of the room, this one included, through Redis.
  def speak(data)
    ActionCable.server.broadcast("room:#{params[:room]}", { "from" => user, "body" => data["body"] })
  end
end

ActionCable.server.config.cable = { "adapter" => "redis", "url" => ENV.fetch("REDIS_URL"), "channel_prefix" => "canary" }
ActionCable.server.config.connection_class = -> { ApplicationCable::Connection }
ActionCable.server.config.disable_request_forgery_protection = true
ActionCable.server.config.logger = Logger.new($stderr, level: Logger::WARN)

login = lambda do |env|
  req = Rack::Request.new(env)
  return [405, { "content-type" => "application/json" }, ['{"error":"method not allowed"}']] unless req.post?
  body = req.media_type == "application/json" ? (JSON.parse(req.body.read) rescue {}) : req.POST
  user = body["username"]
  if user.is_a?(String) && !user.empty? && body["password"] == CanaryToken::PASSWORD
    [200, { "content-type" => "application/json" }, [JSON.generate({ "token" => CanaryToken.issue(user), "user" => user })]]
  else
    [401, { "content-type" => "application/json" }, ['{"error":"invalid credentials"}']]
  end
end

map("/cable") { run ActionCable.server }
map("/api/login") { run login }
map("/healthz") { run ->(_env) { [200, { "content-type" => "application/json" }, ['{"ok":true}']] } }
